output "administrator_login" {
  description = "The role TaskFlow connects as."
  value       = azurerm_postgresql_flexible_server.this.administrator_login
}

output "administrator_password" {
  description = "Generated password of administrator_login."
  value       = random_password.administrator.result
  sensitive   = true
}

output "database_name" {
  description = "Name of TaskFlow's database."
  value       = azurerm_postgresql_flexible_server_database.taskflow.name
}

output "database_pooled_url" {
  description = "database_url on the built-in PgBouncer's port (null while pgbouncer_enabled is false): TASKFLOW_DATABASE_URL behind the pooler (the chart Secret's database-pooled-url)."
  value       = local.database_pooled_url
  sensitive   = true
}

output "database_url" {
  description = "postgresql:// URL with credentials and sslmode=require: TASKFLOW_DATABASE_URL (the chart Secret's database-url)."
  value       = local.database_url
  sensitive   = true
}

output "fqdn" {
  description = "Private FQDN of the server (resolves inside the linked virtual network)."
  value       = azurerm_postgresql_flexible_server.this.fqdn
}

output "id" {
  description = "Resource ID of the server."
  value       = azurerm_postgresql_flexible_server.this.id
}

output "name" {
  description = "Name of the server."
  value       = azurerm_postgresql_flexible_server.this.name
}

output "pooled_port" {
  description = "Port of the built-in PgBouncer on the server's host (null while pgbouncer_enabled is false)."
  value       = var.pgbouncer_enabled ? local.pooled_port : null
}
