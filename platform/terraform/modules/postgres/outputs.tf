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
