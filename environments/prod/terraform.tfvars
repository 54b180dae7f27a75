# prod: three zones, an SLA-backed control plane, a zone-redundant PostgreSQL standby, Premium Redis and registry,
# geo-redundant backups. 10.50.0.0/16: the ranges environments/prod/values.yaml names.
environment           = "prod"
address_space         = "10.50.0.0/16"
log_retention_in_days = 90

aks = {
  zones              = ["1", "2", "3"]
  system_node_pool   = { min_count = 3, max_count = 5 }
  workload_node_pool = { vm_size = "Standard_D8ds_v5", min_count = 3, max_count = 20 }
}

postgres = {
  sku_name                     = "GP_Standard_D4ds_v5"
  storage_mb                   = 131072
  high_availability            = true
  zone                         = "1"
  backup_retention_days        = 35
  geo_redundant_backup_enabled = true
}

redis = {
  sku_name = "Premium"
  zones    = ["1", "2", "3"]
}

registry = {
  sku = "Premium"
}

storage = {
  replication_type = "GZRS"
}
