# A virtual network with a node subnet, a subnet delegated to PostgreSQL and a private endpoint subnet.
terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.42"
    }
  }
}

provider "azurerm" {
  features {}
}

resource "azurerm_resource_group" "example" {
  name     = "rg-network-example"
  location = "westeurope"
}

module "network" {
  source = "../.."

  name                = "vnet-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
  address_space       = ["10.40.0.0/16"]

  subnets = {
    aks = { address_prefixes = ["10.40.4.0/22"] }
    postgres = {
      address_prefixes = ["10.40.2.0/24"]
      delegation       = { name = "postgres", service = "Microsoft.DBforPostgreSQL/flexibleServers" }
    }
    endpoints = { address_prefixes = ["10.40.3.0/24"] }
  }

  private_dns_zones = {
    keyvault = "privatelink.vaultcore.azure.net"
  }
}

output "subnet_ids" {
  description = "Subnet IDs by key."
  value       = module.network.subnet_ids
}
