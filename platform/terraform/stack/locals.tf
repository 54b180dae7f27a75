locals {
  name = "taskflow-${var.environment}"
  # Globally unique names (registry, vault, storage, database, cache) carry a short environment and a random suffix.
  short   = { dev = "dev", staging = "stg", prod = "prd" }[var.environment]
  suffix  = random_string.suffix.result
  compact = "taskflow${local.short}${local.suffix}"

  namespace = coalesce(var.kubernetes.namespace, "taskflow-${var.environment}")
  # The workloads that get an Entra ID identity, and the Kubernetes service account each one federates with.
  workloads = {
    api    = var.kubernetes.api_service_account
    worker = var.kubernetes.worker_service_account
  }

  tags = merge(var.tags, {
    application = "taskflow"
    environment = var.environment
    managed-by  = "terraform"
  })

  subnets = {
    aks       = cidrsubnet(var.address_space, 6, 1) # x.x.4.0/22
    postgres  = cidrsubnet(var.address_space, 8, 2) # x.x.2.0/24
    endpoints = cidrsubnet(var.address_space, 8, 3) # x.x.3.0/24
  }

  # API keys: the clients' and the autoscaler's (KEDA polls GET /api/v1/queue with it).
  autoscaler_key = "keda"
  api_key_scopes = merge(var.api_keys, { (local.autoscaler_key) = ["tasks:read"] })
  api_key_raw    = { for name, _ in local.api_key_scopes : name => "tf_${random_password.api_key[name].result}" }
  # TASKFLOW_API_KEYS: a JSON list of {name, sha256, scopes}, as `taskflow-api keygen` prints them.
  api_keys_json = jsonencode([
    for name, scopes in local.api_key_scopes : { name = name, sha256 = sha256(local.api_key_raw[name]), scopes = scopes }
  ])

  # Azure's built-in PgBouncer: on unless asked otherwise or the SKU is Burstable (which has none).
  pgbouncer_enabled = coalesce(var.postgres.pgbouncer_enabled, !startswith(var.postgres.sku_name, "B_"))

  # What the chart's existingSecret (taskflow-secrets) holds, key for key, plus each client's raw key. database-url
  # is always the direct URL (5432); database-pooled-url (6432) exists while the PgBouncer is on, for the chart's
  # global.postgresql.external.pooler.
  secrets = merge(
    {
      "database-url"     = module.postgres.database_url
      "redis-url"        = module.redis.redis_url
      "api-keys"         = local.api_keys_json
      "autoscaler-token" = local.api_key_raw[local.autoscaler_key]
      "webhook-secret"   = random_password.webhook_secret.result
    },
    { for key, url in { "database-pooled-url" = module.postgres.database_pooled_url } : key => url if local.pgbouncer_enabled },
    { for name, _ in var.api_keys : "api-key-${name}" => local.api_key_raw[name] },
  )
}
