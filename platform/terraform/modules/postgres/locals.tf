locals {
  # The URL TaskFlow reads as TASKFLOW_DATABASE_URL: TLS required (Azure enforces require_secure_transport too).
  database_url = format(
    "postgresql://%s:%s@%s:5432/%s?sslmode=require",
    var.administrator_login,
    urlencode(random_password.administrator.result),
    azurerm_postgresql_flexible_server.this.fqdn,
    azurerm_postgresql_flexible_server_database.taskflow.name,
  )
}
