variable "location" {
  description = "Azure region of the cluster."
  type        = string
}

variable "log_analytics_workspace_id" {
  description = "Resource ID of the Log Analytics workspace the monitoring add-on (container insights) sends to."
  type        = string
}

variable "name" {
  description = "Name of the cluster (1-63 letters, digits, '-' and '_'); also the DNS prefix unless dns_prefix is set."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9_-]{0,61}[A-Za-z0-9]$", var.name))
    error_message = "name must be 2-63 letters, digits, '-' and '_', starting and ending with a letter or digit."
  }
}

variable "resource_group_name" {
  description = "Resource group of the cluster (the nodes live in the MC_* group AKS manages)."
  type        = string
}

variable "subnet_id" {
  description = "Subnet of the nodes (Azure CNI overlay: pods take addresses from network.pod_cidr, not from the subnet)."
  type        = string
}

variable "admin_group_object_ids" {
  description = "Entra ID groups that are cluster admins (local accounts are disabled: access is Entra ID + Azure RBAC only)."
  type        = list(string)
  default     = []
}

variable "api_server_authorized_ip_ranges" {
  description = "CIDRs allowed to reach the public API server (empty: any address, subject to Entra ID authentication). Ignored for a private cluster."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for cidr in var.api_server_authorized_ip_ranges : can(cidrhost(cidr, 0))])
    error_message = "api_server_authorized_ip_ranges holds CIDR ranges, e.g. 203.0.113.0/24."
  }
}

variable "automatic_upgrade_channel" {
  description = "Automatic Kubernetes upgrades: patch, stable, rapid, node-image, or null for none."
  type        = string
  default     = "patch"

  validation {
    condition     = var.automatic_upgrade_channel == null || contains(["patch", "stable", "rapid", "node-image"], coalesce(var.automatic_upgrade_channel, "none"))
    error_message = "automatic_upgrade_channel is patch, stable, rapid, node-image or null."
  }
}

variable "cluster_admin_principal_ids" {
  description = "Principals granted \"Azure Kubernetes Service RBAC Cluster Admin\" on the cluster, by a stable key (e.g. the deployer)."
  type        = map(string)
  default     = {}
}

variable "container_insights" {
  description = "The container insights data collection rule to associate the cluster with (the monitoring module's); null: none."
  type = object({
    data_collection_rule_id = string
  })
  default = null
}

variable "dns_prefix" {
  description = "DNS prefix of the API server's FQDN (default: the cluster name)."
  type        = string
  default     = null
}

variable "host_encryption_enabled" {
  description = "Encrypt the nodes' temporary disks, caches and disk traffic at the host. Needs the EncryptionAtHost feature registered on the subscription (README: bootstrap)."
  type        = bool
  default     = true
}

variable "kubernetes_version" {
  description = "Kubernetes version, a minor alias such as \"1.31\" (null: AKS's default at creation; the patch channel keeps it current)."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^1\\.[0-9]+(\\.[0-9]+)?$", coalesce(var.kubernetes_version, "1.0")))
    error_message = "kubernetes_version looks like 1.31 or 1.31.2."
  }
}

variable "network" {
  description = "Address ranges inside the cluster (Azure CNI overlay with Cilium): pods, services, and the cluster DNS address in service_cidr. None may overlap the virtual network."
  type = object({
    dns_service_ip = optional(string, "172.16.0.10")
    pod_cidr       = optional(string, "192.168.0.0/16")
    service_cidr   = optional(string, "172.16.0.0/16")
  })
  default = {}

  validation {
    condition     = can(cidrhost(var.network.pod_cidr, 0)) && can(cidrhost(var.network.service_cidr, 0)) && can(cidrhost("${var.network.dns_service_ip}/32", 0))
    error_message = "network.pod_cidr and network.service_cidr are CIDR ranges, network.dns_service_ip an IPv4 address."
  }
}

variable "node_os_upgrade_channel" {
  description = "How node OS images are kept patched: NodeImage, SecurityPatch, Unmanaged or None."
  type        = string
  default     = "NodeImage"

  validation {
    condition     = contains(["NodeImage", "SecurityPatch", "Unmanaged", "None"], var.node_os_upgrade_channel)
    error_message = "node_os_upgrade_channel is NodeImage, SecurityPatch, Unmanaged or None."
  }
}

variable "os_disk_type" {
  description = "OS disks of both node pools: Ephemeral (on the VM's local disk: faster, nothing persisted, no storage cost) or Managed."
  type        = string
  default     = "Ephemeral"

  validation {
    condition     = contains(["Ephemeral", "Managed"], var.os_disk_type)
    error_message = "os_disk_type is Ephemeral or Managed."
  }
}

variable "private_cluster_enabled" {
  description = "API server on a private address in the virtual network only (then CI reaches it through `az aks command invoke` or a runner in the network)."
  type        = bool
  default     = false
}

variable "sku_tier" {
  description = "Control plane tier: Free (no SLA), Standard (uptime SLA) or Premium (long-term support)."
  type        = string
  default     = "Standard"

  validation {
    condition     = contains(["Free", "Standard", "Premium"], var.sku_tier)
    error_message = "sku_tier is Free, Standard or Premium."
  }
}

variable "system_node_pool" {
  description = <<-EOT
    The system pool (tainted CriticalAddonsOnly: only kube-system and add-ons run there), autoscaled between
    min_count and max_count. With Ephemeral OS disks (var.os_disk_type) the VM size's temporary disk must hold
    os_disk_size_gb (Standard_D2ds_v5: 75 GB).
  EOT
  type = object({
    max_count       = optional(number, 3)
    min_count       = optional(number, 1)
    os_disk_size_gb = optional(number, 64)
    vm_size         = optional(string, "Standard_D2ds_v5")
  })
  default = {}

  validation {
    condition     = var.system_node_pool.min_count >= 1 && var.system_node_pool.min_count <= var.system_node_pool.max_count && var.system_node_pool.max_count <= 1000
    error_message = "system_node_pool needs 1 <= min_count <= max_count <= 1000."
  }

}

variable "tags" {
  description = "Tags on every resource of the module."
  type        = map(string)
  default     = {}
}

variable "workload_node_pool" {
  description = <<-EOT
    The user pool TaskFlow's pods run on, autoscaled by the cluster autoscaler between min_count and max_count as
    KEDA adds and removes workers. node_labels are added to its nodes. With Ephemeral OS disks the VM size's
    temporary disk must hold os_disk_size_gb (Standard_D4ds_v5: 150 GB).
  EOT
  type = object({
    max_count       = optional(number, 5)
    min_count       = optional(number, 1)
    node_labels     = optional(map(string), {})
    os_disk_size_gb = optional(number, 128)
    vm_size         = optional(string, "Standard_D4ds_v5")
  })
  default = {}

  validation {
    condition     = var.workload_node_pool.min_count >= 0 && var.workload_node_pool.min_count <= var.workload_node_pool.max_count && var.workload_node_pool.max_count <= 1000
    error_message = "workload_node_pool needs 0 <= min_count <= max_count <= 1000."
  }

}

variable "zones" {
  description = "Availability zones of both node pools, e.g. [\"1\", \"2\", \"3\"] (empty: no zone pinning)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for zone in var.zones : contains(["1", "2", "3"], zone)])
    error_message = "zones are \"1\", \"2\" and/or \"3\"."
  }
}
