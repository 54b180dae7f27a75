locals {
  # The URL TaskFlow reads as TASKFLOW_DATABASE_URL: TLS required (Azure enforces require_secure_transport too).
  database_url = format(
    "postgresql://%s:%s@%s:%d/%s?sslmode=require",
    var.administrator_login,
    urlencode(random_password.administrator.result),
    azurerm_postgresql_flexible_server.this.fqdn,
    5432,
    azurerm_postgresql_flexible_server_database.taskflow.name,
  )
  # Azure's built-in PgBouncer listens on this port of the same host.
  pooled_port = 6432
  # The same through the built-in PgBouncer (transaction pooling): TASKFLOW_DATABASE_URL when it is on, with
  # database_url as TASKFLOW_DATABASE_DIRECT_URL.
  database_pooled_url = var.pgbouncer_enabled ? replace(local.database_url, ":5432/", ":${local.pooled_port}/") : null
}
