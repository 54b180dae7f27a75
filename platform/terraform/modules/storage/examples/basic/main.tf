# An Entra-ID-only account with the default results and archive containers and a state container. It has no public
# endpoint: give it a private endpoint (var.private_endpoint) to reach its data.
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
  # The account has no public endpoint: management plane only.
  features {
    storage {
      data_plane_available = false
    }
  }
}

resource "azurerm_resource_group" "example" {
  name     = "rg-storage-example"
  location = "westeurope"
}

module "storage" {
  source = "../.."

  name                    = "sttaskflowexample"
  location                = azurerm_resource_group.example.location
  resource_group_name     = azurerm_resource_group.example.name
  state_container_enabled = true
}

output "containers" {
  description = "Container IDs by name."
  value       = module.storage.container_ids
}
