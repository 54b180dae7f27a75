# dev: the smallest of everything, one zone, no SLA. Only what differs from the stack's defaults (staging's shape).
environment   = "dev"
address_space = "10.30.0.0/16"

aks = {
  sku_tier           = "Free"
  system_node_pool   = { max_count = 2 }
  workload_node_pool = { max_count = 3 }
}

postgres = {
  sku_name = "B_Standard_B1ms"
}

redis = {
  sku_name = "Basic"
  capacity = 0
}

registry = {
  sku = "Basic"
}

storage = {
  replication_type = "LRS"
}
