# staging: the stack's defaults are staging's shape (10.40.0.0/16, the ranges environments/base/values.yaml names).
environment = "staging"
