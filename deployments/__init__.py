"""Ray Serve deployments of LeanServe and the application builder."""
