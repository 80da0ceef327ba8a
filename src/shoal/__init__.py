"""shoal: a self-hosted serverless GPU platform for unmodified Modal apps."""
