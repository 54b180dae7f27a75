# A cluster in its own subnet, reporting to a Log Analytics workspace, with one cluster admin.
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
  name     = "rg-aks-example"
  location = "westeurope"
}

resource "azurerm_virtual_network" "example" {
  name                = "vnet-aks-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
  address_space       = ["10.40.0.0/16"]
}

resource "azurerm_subnet" "nodes" {
  name                 = "aks"
  resource_group_name  = azurerm_resource_group.example.name
  virtual_network_name = azurerm_virtual_network.example.name
  address_prefixes     = ["10.40.4.0/22"]
}

resource "azurerm_network_security_group" "nodes" {
  name                = "nsg-aks-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
}

resource "azurerm_subnet_network_security_group_association" "nodes" {
  subnet_id                 = azurerm_subnet.nodes.id
  network_security_group_id = azurerm_network_security_group.nodes.id
}

resource "azurerm_log_analytics_workspace" "example" {
  name                = "log-aks-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
  sku                 = "PerGB2018"
  retention_in_days   = 30
}

module "aks" {
  source = "../.."

  name                            = "aks-example"
  location                        = azurerm_resource_group.example.location
  resource_group_name             = azurerm_resource_group.example.name
  subnet_id                       = azurerm_subnet.nodes.id
  log_analytics_workspace_id      = azurerm_log_analytics_workspace.example.id
  api_server_authorized_ip_ranges = ["203.0.113.0/24"]
  cluster_admin_principal_ids     = { me = data.azurerm_client_config.current.object_id }
  workload_node_pool              = { min_count = 1, max_count = 3 }
}

output "oidc_issuer_url" {
  description = "Issuer for federated credentials."
  value       = module.aks.oidc_issuer_url
}
