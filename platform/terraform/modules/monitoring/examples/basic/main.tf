# A workspace with 60 days of retention and the container insights rule an AKS cluster can be associated with.
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
  name     = "rg-monitoring-example"
  location = "westeurope"
}

module "monitoring" {
  source = "../.."

  name                = "log-monitoring-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
  retention_in_days   = 60
}

output "workspace_id" {
  description = "Resource ID of the workspace."
  value       = module.monitoring.id
}
