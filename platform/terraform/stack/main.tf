data "azurerm_client_config" "current" {}

resource "random_string" "suffix" {
  length  = 5
  upper   = false
  special = false
}

resource "azurerm_resource_group" "this" {
  name     = "rg-${local.name}"
  location = var.location
  tags     = local.tags
}

module "network" {
  source = "../modules/network"

  name                = "vnet-${local.name}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  address_space       = [var.address_space]
  tags                = local.tags

  subnets = {
    aks = { address_prefixes = [local.subnets.aks] }
    postgres = {
      address_prefixes = [local.subnets.postgres]
      delegation       = { name = "postgres", service = "Microsoft.DBforPostgreSQL/flexibleServers" }
    }
    endpoints = { address_prefixes = [local.subnets.endpoints] }
  }

  private_dns_zones = {
    postgres = "${local.name}.private.postgres.database.azure.com"
    redis    = "privatelink.redis.cache.windows.net"
    keyvault = "privatelink.vaultcore.azure.net"
    blob     = "privatelink.blob.core.windows.net"
  }
}

module "monitoring" {
  source = "../modules/monitoring"

  name                = "log-${local.name}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  retention_in_days   = var.log_retention_in_days
  tags                = local.tags
}

module "aks" {
  source = "../modules/aks"

  name                            = "aks-${local.name}"
  location                        = azurerm_resource_group.this.location
  resource_group_name             = azurerm_resource_group.this.name
  subnet_id                       = module.network.subnet_ids["aks"]
  log_analytics_workspace_id      = module.monitoring.id
  container_insights              = { data_collection_rule_id = module.monitoring.container_insights_data_collection_rule_id }
  kubernetes_version              = var.aks.kubernetes_version
  sku_tier                        = var.aks.sku_tier
  zones                           = var.aks.zones
  private_cluster_enabled         = var.aks.private_cluster_enabled
  api_server_authorized_ip_ranges = var.aks.api_server_authorized_ip_ranges
  admin_group_object_ids          = var.aks.admin_group_object_ids
  cluster_admin_principal_ids     = merge({ deployer = data.azurerm_client_config.current.object_id }, var.cluster_admin_principal_ids)
  system_node_pool                = var.aks.system_node_pool
  workload_node_pool              = var.aks.workload_node_pool
  tags                            = local.tags
}

module "registry" {
  source = "../modules/registry"

  name                = "acr${local.compact}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku                 = var.registry.sku
  pull_principal_ids  = { aks_kubelet = module.aks.kubelet_identity_object_id }
  push_principal_ids  = var.registry.push_principal_ids
  tags                = local.tags
}

module "postgres" {
  source = "../modules/postgres"

  name                         = "psql-taskflow-${local.short}-${local.suffix}"
  location                     = azurerm_resource_group.this.location
  resource_group_name          = azurerm_resource_group.this.name
  delegated_subnet_id          = module.network.subnet_ids["postgres"]
  private_dns_zone_id          = module.network.private_dns_zone_ids["postgres"]
  sku_name                     = var.postgres.sku_name
  storage_mb                   = var.postgres.storage_mb
  zone                         = var.postgres.zone
  high_availability            = var.postgres.high_availability ? { mode = "ZoneRedundant", standby_zone = var.postgres.standby_zone } : null
  backup_retention_days        = var.postgres.backup_retention_days
  geo_redundant_backup_enabled = var.postgres.geo_redundant_backup_enabled
  pgbouncer_enabled            = local.pgbouncer_enabled
  tags                         = local.tags
}

module "redis" {
  source = "../modules/redis"

  name                = "redis-taskflow-${local.short}-${local.suffix}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  sku_name            = var.redis.sku_name
  capacity            = var.redis.capacity
  zones               = var.redis.zones
  tags                = local.tags

  private_endpoint = {
    subnet_id           = module.network.subnet_ids["endpoints"]
    private_dns_zone_id = module.network.private_dns_zone_ids["redis"]
  }
}

module "storage" {
  source = "../modules/storage"

  name                                = "st${local.compact}"
  location                            = azurerm_resource_group.this.location
  resource_group_name                 = azurerm_resource_group.this.name
  replication_type                    = var.storage.replication_type
  blob_data_contributor_principal_ids = { worker = azurerm_user_assigned_identity.workload["worker"].principal_id }
  diagnostics                         = { log_analytics_workspace_id = module.monitoring.id }
  tags                                = local.tags

  private_endpoint = {
    subnet_id           = module.network.subnet_ids["endpoints"]
    private_dns_zone_id = module.network.private_dns_zone_ids["blob"]
  }
}

module "keyvault" {
  source = "../modules/keyvault"

  name                          = "kv-taskflow-${local.short}-${local.suffix}"
  location                      = azurerm_resource_group.this.location
  resource_group_name           = azurerm_resource_group.this.name
  tenant_id                     = data.azurerm_client_config.current.tenant_id
  allowed_ip_ranges             = var.key_vault_allowed_ip_ranges
  secrets                       = local.secrets
  secrets_officer_principal_ids = { deployer = data.azurerm_client_config.current.object_id }
  secrets_user_principal_ids = {
    api        = azurerm_user_assigned_identity.workload["api"].principal_id
    worker     = azurerm_user_assigned_identity.workload["worker"].principal_id
    csi_driver = module.aks.key_vault_secrets_provider_identity_object_id
  }
  tags = local.tags

  private_endpoint = {
    subnet_id           = module.network.subnet_ids["endpoints"]
    private_dns_zone_id = module.network.private_dns_zone_ids["keyvault"]
  }
}

# Workload identities: the API's and the worker's pods exchange their service account token (issued by the
# cluster's OIDC issuer) for an Entra ID token of these identities.
resource "azurerm_user_assigned_identity" "workload" {
  for_each = local.workloads

  name                = "id-${local.name}-${each.key}"
  location            = azurerm_resource_group.this.location
  resource_group_name = azurerm_resource_group.this.name
  tags                = local.tags
}

resource "azurerm_federated_identity_credential" "workload" {
  for_each = local.workloads

  name                = "aks-${local.namespace}-${each.value}"
  resource_group_name = azurerm_resource_group.this.name
  parent_id           = azurerm_user_assigned_identity.workload[each.key].id
  audience            = ["api://AzureADTokenExchange"]
  issuer              = module.aks.oidc_issuer_url
  subject             = "system:serviceaccount:${local.namespace}:${each.value}"
}

# The callbacks' signing key (TASKFLOW_WEBHOOK_SECRET, HMAC-SHA256): 256 bits. Only Key Vault holds it.
resource "random_password" "webhook_secret" {
  length  = 43
  special = false
}

# Generated API keys ("tf_" + 43 characters: 256 bits, like `taskflow-api keygen`). Only Key Vault holds them.
resource "random_password" "api_key" {
  for_each = local.api_key_scopes

  length  = 43
  special = false
}
