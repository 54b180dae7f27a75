output "hostname" {
  description = "Host name of the cache (resolves to the private endpoint inside the linked virtual network)."
  value       = azurerm_redis_cache.this.hostname
}

output "id" {
  description = "Resource ID of the cache."
  value       = azurerm_redis_cache.this.id
}

output "name" {
  description = "Name of the cache."
  value       = azurerm_redis_cache.this.name
}

output "primary_access_key" {
  description = "Primary access key (the password of the default user)."
  value       = azurerm_redis_cache.this.primary_access_key
  sensitive   = true
}

output "private_ip_address" {
  description = "Address of the private endpoint (inside var.private_endpoint.subnet_id: what the chart's network policy allows)."
  value       = azurerm_private_endpoint.redis.private_service_connection[0].private_ip_address
}

output "redis_url" {
  description = "rediss:// URL with the access key: TASKFLOW_REDIS_URL (the chart Secret's redis-url)."
  value       = local.redis_url
  sensitive   = true
}

output "ssl_port" {
  description = "TLS port (6380)."
  value       = azurerm_redis_cache.this.ssl_port
}
