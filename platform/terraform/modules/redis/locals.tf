locals {
  family = var.sku_name == "Premium" ? "P" : "C"
  # TASKFLOW_REDIS_URL: TLS on 6380 (the plain port is off), the access key as the password, database 0.
  redis_url = format(
    "rediss://:%s@%s:%d/0",
    urlencode(azurerm_redis_cache.this.primary_access_key),
    azurerm_redis_cache.this.hostname,
    azurerm_redis_cache.this.ssl_port,
  )
}
