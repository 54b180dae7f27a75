variable "address_space" {
  description = "Address ranges of the virtual network (CIDR), e.g. [\"10.40.0.0/16\"]."
  type        = list(string)

  validation {
    condition     = length(var.address_space) > 0 && alltrue([for cidr in var.address_space : can(cidrhost(cidr, 0))])
    error_message = "address_space must hold at least one valid CIDR range."
  }
}

variable "location" {
  description = "Azure region of the virtual network, its network security groups and DNS links."
  type        = string
}

variable "name" {
  description = "Name of the virtual network; the network security groups are named after it and the subnet."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}[A-Za-z0-9_]$", var.name))
    error_message = "name must be 2-64 characters: letters, digits, '_', '.', '-', starting with a letter or digit."
  }
}

variable "resource_group_name" {
  description = "Resource group the network resources are created in."
  type        = string
}

variable "subnets" {
  description = <<-EOT
    Subnets by key. Each gets a network security group of its own (Azure's default rules: traffic inside the
    virtual network only). `delegation` hands the subnet to one service (e.g. Microsoft.DBforPostgreSQL/flexibleServers);
    `private_endpoint_network_policies` is Disabled, Enabled, NetworkSecurityGroupEnabled or RouteTableEnabled.
  EOT
  type = map(object({
    address_prefixes = list(string)
    delegation = optional(object({
      name    = string
      service = string
      actions = optional(list(string), ["Microsoft.Network/virtualNetworks/subnets/join/action"])
    }))
    private_endpoint_network_policies = optional(string, "Disabled")
    service_endpoints                 = optional(list(string), [])
  }))

  validation {
    condition = alltrue([
      for subnet in values(var.subnets) : length(subnet.address_prefixes) > 0 && alltrue([for cidr in subnet.address_prefixes : can(cidrhost(cidr, 0))])
    ])
    error_message = "Every subnet needs at least one valid CIDR in address_prefixes."
  }

  validation {
    condition = alltrue([
      for subnet in values(var.subnets) : contains(["Disabled", "Enabled", "NetworkSecurityGroupEnabled", "RouteTableEnabled"], subnet.private_endpoint_network_policies)
    ])
    error_message = "private_endpoint_network_policies is one of Disabled, Enabled, NetworkSecurityGroupEnabled, RouteTableEnabled."
  }
}

variable "private_dns_zones" {
  description = "Private DNS zones to create and link to the virtual network (privatelink.* zones for private endpoints, the PostgreSQL zone), keyed by a short name."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for zone in values(var.private_dns_zones) : can(regex("^([a-z0-9-]+\\.)+[a-z]+$", zone))])
    error_message = "private_dns_zones values are lower-case DNS zone names, e.g. privatelink.vaultcore.azure.net."
  }
}

variable "tags" {
  description = "Tags on every resource of the module."
  type        = map(string)
  default     = {}
}
