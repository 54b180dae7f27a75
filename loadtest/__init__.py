"""Load, benchmark and scaling harnesses for TaskFlow (run with `make load`, `make bench`, `make scale-test`)."""
