# A vault holding one generated secret, that the caller manages and one workload identity reads.
terraform {
  required_version = ">= 1.9"

  required_providers {
    azurerm = {
      source  = "hashicorp/azurerm"
      version = "~> 4.42"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }
}

provider "azurerm" {
  features {}
}

data "azurerm_client_config" "current" {}

resource "azurerm_resource_group" "example" {
  name     = "rg-keyvault-example"
  location = "westeurope"
}

resource "azurerm_user_assigned_identity" "workload" {
  name                = "id-keyvault-example"
  location            = azurerm_resource_group.example.location
  resource_group_name = azurerm_resource_group.example.name
}

resource "random_password" "token" {
  length  = 32
  special = false
}

module "keyvault" {
  source = "../.."

  name                          = "kv-taskflow-example"
  location                      = azurerm_resource_group.example.location
  resource_group_name           = azurerm_resource_group.example.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  allowed_ip_ranges             = ["203.0.113.10"]
  secrets                       = { token = random_password.token.result }
  secrets_officer_principal_ids = { me = data.azurerm_client_config.current.object_id }
  secrets_user_principal_ids    = { workload = azurerm_user_assigned_identity.workload.principal_id }
}

output "vault_uri" {
  description = "Where the secret lives."
  value       = module.keyvault.vault_uri
}
