output "id" {
  description = "Resource ID of the virtual network."
  value       = azurerm_virtual_network.this.id
}

output "name" {
  description = "Name of the virtual network."
  value       = azurerm_virtual_network.this.name
}

output "network_security_group_ids" {
  description = "Network security group IDs by subnet key."
  value       = { for key, nsg in azurerm_network_security_group.subnet : key => nsg.id }
}

output "private_dns_zone_ids" {
  description = "Private DNS zone IDs by the keys of var.private_dns_zones, once linked to the network (PostgreSQL's private access needs the link first)."
  value       = { for key, zone in azurerm_private_dns_zone.zone : key => zone.id }
  depends_on  = [azurerm_private_dns_zone_virtual_network_link.zone]
}

output "subnet_ids" {
  description = "Subnet IDs by subnet key, once their network security groups are attached (no concurrent subnet updates)."
  value       = { for key, subnet in azurerm_subnet.this : key => subnet.id }
  depends_on  = [azurerm_subnet_network_security_group_association.subnet]
}
