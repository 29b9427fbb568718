"""Operations: metrics, health and readiness endpoints, and service registration."""
