variable "location" {
  description = "Azure region of the cache."
  type        = string
}

variable "name" {
  description = "Globally unique cache name (1-63 letters, digits and hyphens); the host is <name>.redis.cache.windows.net."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$", var.name)) && !strcontains(var.name, "--")
    error_message = "name must be 1-63 letters, digits and single hyphens, starting and ending with a letter or digit."
  }
}

variable "private_endpoint" {
  description = "Where the cache's private endpoint goes: a subnet and the privatelink.redis.cache.windows.net zone linked to the network (the cache has no public endpoint)."
  type = object({
    subnet_id           = string
    private_dns_zone_id = string
  })
}

variable "resource_group_name" {
  description = "Resource group the cache is created in."
  type        = string
}

variable "capacity" {
  description = "Size within the family: 0-6 for C (Basic/Standard: 250 MB to 53 GB), 1-5 for P (Premium: 6 GB to 120 GB)."
  type        = number
  default     = 1

  validation {
    condition     = var.capacity >= 0 && var.capacity <= 6 && floor(var.capacity) == var.capacity
    error_message = "capacity is a whole number between 0 and 6 (1-5 for Premium)."
  }
}

variable "maxmemory_policy" {
  description = "What Redis does when full. TaskFlow's queue lives here, so the default refuses writes rather than evicting jobs (noeviction)."
  type        = string
  default     = "noeviction"

  validation {
    condition     = contains(["noeviction", "volatile-lru", "allkeys-lru", "volatile-lfu", "allkeys-lfu", "volatile-random", "allkeys-random", "volatile-ttl"], var.maxmemory_policy)
    error_message = "maxmemory_policy is one of Redis's policies (noeviction, volatile-lru, allkeys-lru, ...)."
  }
}

variable "redis_version" {
  description = "Redis major version."
  type        = string
  default     = "6"

  validation {
    condition     = contains(["6"], var.redis_version)
    error_message = "redis_version is 6 (the only version Azure Cache for Redis creates)."
  }
}

variable "sku_name" {
  description = "Basic (one node, no SLA), Standard (primary and replica) or Premium (zones, persistence, clustering). The family follows: C, or P for Premium."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Basic", "Standard", "Premium"], var.sku_name)
    error_message = "sku_name is Basic, Standard or Premium."
  }
}

variable "tags" {
  description = "Tags on every resource of the module."
  type        = map(string)
  default     = {}
}

variable "zones" {
  description = "Availability zones of the cache nodes (Premium only), e.g. [\"1\", \"2\", \"3\"]."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for zone in var.zones : contains(["1", "2", "3"], zone)]) && (length(var.zones) == 0 || var.sku_name == "Premium")
    error_message = "zones are \"1\", \"2\" and/or \"3\", and need sku_name Premium."
  }
}
