variable "environment" {
  description = "Which environment this state is: dev, staging or prod (names, tags, the Kubernetes namespace taskflow-<env>)."
  type        = string

  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment is dev, staging or prod."
  }
}

variable "address_space" {
  description = <<-EOT
    The environment's virtual network, a /16. Subnets are carved from it at fixed offsets: nodes x.x.4.0/22,
    PostgreSQL x.x.2.0/24, private endpoints (Redis, Key Vault, blob) x.x.3.0/24 - the ranges the chart's network
    policies name in environments/<env>/values.yaml (global.networkPolicy).
  EOT
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.address_space, 0)) && endswith(var.address_space, "/16")
    error_message = "address_space is a /16 CIDR range, e.g. 10.40.0.0/16."
  }
}

variable "aks" {
  description = <<-EOT
    The cluster: control plane tier (Free, Standard, Premium), Kubernetes version (null: AKS default), zones of both
    node pools, who may reach and administer the API server, and the sizes and autoscaling bounds of the system
    and workload node pools.
  EOT
  type = object({
    admin_group_object_ids          = optional(list(string), [])
    api_server_authorized_ip_ranges = optional(list(string), [])
    kubernetes_version              = optional(string)
    private_cluster_enabled         = optional(bool, false)
    sku_tier                        = optional(string, "Standard")
    system_node_pool = optional(object({
      max_count = optional(number, 3)
      min_count = optional(number, 1)
      vm_size   = optional(string, "Standard_D2ds_v5")
    }), {})
    workload_node_pool = optional(object({
      max_count = optional(number, 5)
      min_count = optional(number, 1)
      vm_size   = optional(string, "Standard_D4ds_v5")
    }), {})
    zones = optional(list(string), [])
  })
  default = {}

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.aks.sku_tier)
    error_message = "aks.sku_tier is Free, Standard or Premium."
  }

  validation {
    condition     = alltrue([for zone in var.aks.zones : contains(["1", "2", "3"], zone)])
    error_message = "aks.zones are \"1\", \"2\" and/or \"3\"."
  }

  validation {
    condition = (
      var.aks.system_node_pool.min_count >= 1 && var.aks.system_node_pool.min_count <= var.aks.system_node_pool.max_count &&
      var.aks.workload_node_pool.min_count >= 0 && var.aks.workload_node_pool.min_count <= var.aks.workload_node_pool.max_count
    )
    error_message = "Node pools need min_count <= max_count (the system pool at least one node)."
  }
}

variable "api_keys" {
  description = <<-EOT
    API keys Terraform mints for clients, name => scopes (tasks:read, tasks:write, admin). Each raw key goes to
    Key Vault as api-key-<name>, its SHA-256 entry into api-keys (TASKFLOW_API_KEYS). The autoscaler's key
    (name keda, scope tasks:read) is always minted, as autoscaler-token.
  EOT
  type        = map(list(string))
  default = {
    backend = ["tasks:read", "tasks:write"]
  }

  validation {
    condition     = alltrue([for name in keys(var.api_keys) : can(regex("^[a-z0-9][a-z0-9-]{0,39}$", name)) && name != "keda"])
    error_message = "api_keys names are 1-40 lower-case letters, digits and hyphens; keda is the autoscaler's."
  }

  validation {
    condition     = alltrue([for scopes in values(var.api_keys) : length(scopes) > 0 && alltrue([for scope in scopes : contains(["tasks:read", "tasks:write", "admin"], scope)])])
    error_message = "Each API key has at least one scope out of tasks:read, tasks:write, admin."
  }
}

variable "cluster_admin_principal_ids" {
  description = "Principals granted Azure Kubernetes Service RBAC Cluster Admin besides whoever runs Terraform, by a stable key."
  type        = map(string)
  default     = {}
}

variable "key_vault_allowed_ip_ranges" {
  description = "Public addresses let through the Key Vault firewall: the egress address of whatever runs terraform apply (it writes the secrets), unless it runs inside the network."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for range in var.key_vault_allowed_ip_ranges : can(cidrhost(strcontains(range, "/") ? range : "${range}/32", 0))])
    error_message = "key_vault_allowed_ip_ranges holds IPv4 addresses or CIDR ranges."
  }
}

variable "kubernetes" {
  description = "Where the chart runs: the namespace (null: taskflow-<env>, as the Argo CD Applications say) and the service accounts it renders for the API and the worker (release taskflow)."
  type = object({
    api_service_account    = optional(string, "taskflow-api")
    namespace              = optional(string)
    worker_service_account = optional(string, "taskflow-worker")
  })
  default = {}
}

variable "location" {
  description = "Azure region of everything in the environment."
  type        = string
  default     = "westeurope"

  validation {
    condition     = can(regex("^[a-z0-9]+$", var.location))
    error_message = "location is a region name such as westeurope (lower case, no spaces)."
  }
}

variable "log_retention_in_days" {
  description = "Days the Log Analytics workspace keeps container insights and logs (30-730)."
  type        = number
  default     = 30

  validation {
    condition     = var.log_retention_in_days >= 30 && var.log_retention_in_days <= 730
    error_message = "log_retention_in_days is between 30 and 730."
  }
}

variable "postgres" {
  description = <<-EOT
    Azure Database for PostgreSQL flexible server 15: compute SKU, storage, backups, high availability (a
    zone-redundant standby in standby_zone while the primary stays in zone; not on Burstable B_ SKUs), and the
    built-in PgBouncer on 6432 (pgbouncer_enabled; unset: on unless the SKU is Burstable, where Azure has none).
  EOT
  type = object({
    backup_retention_days        = optional(number, 7)
    geo_redundant_backup_enabled = optional(bool, false)
    high_availability            = optional(bool, false)
    pgbouncer_enabled            = optional(bool)
    sku_name                     = optional(string, "GP_Standard_D2ds_v5")
    standby_zone                 = optional(string, "2")
    storage_mb                   = optional(number, 32768)
    zone                         = optional(string)
  })
  default = {}

  validation {
    condition     = !(var.postgres.high_availability && startswith(var.postgres.sku_name, "B_"))
    error_message = "postgres.high_availability needs a General Purpose (GP_) or Memory Optimized (MO_) SKU."
  }

  validation {
    condition     = !(coalesce(var.postgres.pgbouncer_enabled, false) && startswith(var.postgres.sku_name, "B_"))
    error_message = "postgres.pgbouncer_enabled needs a General Purpose (GP_) or Memory Optimized (MO_) SKU."
  }

  validation {
    condition     = !var.postgres.high_availability || (var.postgres.zone != null && var.postgres.zone != var.postgres.standby_zone)
    error_message = "postgres.high_availability needs postgres.zone set and different from postgres.standby_zone."
  }
}

variable "redis" {
  description = "Azure Cache for Redis: Basic, Standard or Premium (zones only on Premium), and the capacity within the SKU's family."
  type = object({
    capacity = optional(number, 1)
    sku_name = optional(string, "Standard")
    zones    = optional(list(string), [])
  })
  default = {}

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.redis.sku_name) && (length(var.redis.zones) == 0 || var.redis.sku_name == "Premium")
    error_message = "redis.sku_name is Basic, Standard or Premium; redis.zones need Premium."
  }
}

variable "registry" {
  description = "Azure Container Registry: SKU (Premium for zone redundancy and retention) and who may push (CI's identity), by a stable key."
  type = object({
    push_principal_ids = optional(map(string), {})
    sku                = optional(string, "Standard")
  })
  default = {}

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.registry.sku)
    error_message = "registry.sku is Basic, Standard or Premium."
  }
}

variable "storage" {
  description = "The results/archive storage account's redundancy (LRS, ZRS, GRS, RAGRS, GZRS, RAGZRS)."
  type = object({
    replication_type = optional(string, "ZRS")
  })
  default = {}

  validation {
    condition     = contains(["LRS", "ZRS", "GRS", "RAGRS", "GZRS", "RAGZRS"], var.storage.replication_type)
    error_message = "storage.replication_type is LRS, ZRS, GRS, RAGRS, GZRS or RAGZRS."
  }
}

variable "tags" {
  description = "Tags added to every resource, besides application, environment and managed-by."
  type        = map(string)
  default     = {}
}
