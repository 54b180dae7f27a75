# Letters and digits only: safe in a URL without escaping, and Azure's complexity rule (three of four classes) holds.
resource "random_password" "administrator" {
  length      = 40
  special     = false
  min_lower   = 2
  min_upper   = 2
  min_numeric = 2
}

resource "azurerm_postgresql_flexible_server" "this" {
  name                          = var.name
  location                      = var.location
  resource_group_name           = var.resource_group_name
  version                       = var.postgresql_version
  sku_name                      = var.sku_name
  storage_mb                    = var.storage_mb
  auto_grow_enabled             = true
  zone                          = var.zone
  delegated_subnet_id           = var.delegated_subnet_id
  private_dns_zone_id           = var.private_dns_zone_id
  public_network_access_enabled = false
  administrator_login           = var.administrator_login
  administrator_password        = random_password.administrator.result
  backup_retention_days         = var.backup_retention_days
  geo_redundant_backup_enabled  = var.geo_redundant_backup_enabled
  tags                          = var.tags

  authentication {
    password_auth_enabled         = true
    active_directory_auth_enabled = false
  }

  dynamic "high_availability" {
    for_each = var.high_availability == null ? [] : [var.high_availability]

    content {
      mode                      = high_availability.value.mode
      standby_availability_zone = high_availability.value.mode == "ZoneRedundant" ? high_availability.value.standby_zone : null
    }
  }

  dynamic "maintenance_window" {
    for_each = var.maintenance_window == null ? [] : [var.maintenance_window]

    content {
      day_of_week  = maintenance_window.value.day_of_week
      start_hour   = maintenance_window.value.start_hour
      start_minute = maintenance_window.value.start_minute
    }
  }

  lifecycle {
    # After a failover the standby is the primary: do not fail back on the next apply.
    ignore_changes = [zone, high_availability[0].standby_availability_zone]
  }
}

resource "azurerm_postgresql_flexible_server_database" "taskflow" {
  name      = var.database_name
  server_id = azurerm_postgresql_flexible_server.this.id
  charset   = "UTF8"
  collation = "en_US.utf8"
}

# Azure's built-in PgBouncer on port 6432 (General Purpose and Memory Optimized tiers only). Azure runs it in
# transaction pooling mode, which TaskFlow supports with TASKFLOW_DATABASE_DIRECT_URL for its sessions; stated here
# so that a change in the portal shows up as drift. One parameter after the other: Azure refuses concurrent
# parameter updates of one server, and the pgbouncer.* ones exist only once pgbouncer.enabled is true.
resource "azurerm_postgresql_flexible_server_configuration" "pgbouncer_enabled" {
  count = var.pgbouncer_enabled ? 1 : 0

  name      = "pgbouncer.enabled"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "true"
}

resource "azurerm_postgresql_flexible_server_configuration" "pgbouncer_pool_mode" {
  count = var.pgbouncer_enabled ? 1 : 0

  name      = "pgbouncer.pool_mode"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = "TRANSACTION"

  depends_on = [azurerm_postgresql_flexible_server_configuration.pgbouncer_enabled]
}

resource "azurerm_postgresql_flexible_server_configuration" "pgbouncer_default_pool_size" {
  count = var.pgbouncer_enabled ? 1 : 0

  name      = "pgbouncer.default_pool_size"
  server_id = azurerm_postgresql_flexible_server.this.id
  value     = tostring(var.pgbouncer_default_pool_size)

  depends_on = [azurerm_postgresql_flexible_server_configuration.pgbouncer_pool_mode]
}
