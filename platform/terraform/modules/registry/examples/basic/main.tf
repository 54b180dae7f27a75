# A Standard registry that one principal may pull from.
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

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "example" {
  name     = "rg-registry-example"
  location = "westeurope"
}

module "registry" {
  source = "../.."

  name                = "acrtaskflowexample"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
  pull_principal_ids  = { me = data.azurerm_client_config.current.object_id }
}

output "login_server" {
  description = "Where to push images."
  value       = module.registry.login_server
}
