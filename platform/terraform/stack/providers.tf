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

  # Filled per environment: terraform init -backend-config=../../../environments/<env>/backend.hcl
  backend "azurerm" {}
}

# The subscription comes from ARM_SUBSCRIPTION_ID, the credentials from the environment (OIDC in CI, az login locally).
provider "azurerm" {
  # Storage data-plane calls, if any, with Entra ID: the storage accounts have shared keys disabled.
  storage_use_azuread = true

  features {
    # The storage account has no public endpoint: manage it (and its containers) through the management plane only.
    storage {
      data_plane_available = false
    }

    key_vault {
      # Purge protection is on: a destroyed vault stays recoverable instead of being purged.
      purge_soft_delete_on_destroy    = false
      recover_soft_deleted_key_vaults = true
    }

    resource_group {
      prevent_deletion_if_contains_resources = true
    }
  }
}
