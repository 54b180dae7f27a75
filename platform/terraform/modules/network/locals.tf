locals {
  # One network security group per subnet, named after the network and the subnet key.
  nsg_names = { for key in keys(var.subnets) : key => "nsg-${var.name}-${key}" }
}
