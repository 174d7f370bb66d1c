"""Generated from proto/sip/v1 by `make proto`; do not edit."""
