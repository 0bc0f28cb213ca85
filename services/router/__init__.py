"""The router service: the inference path from request to provider and back."""
