"""What every part runs on: settings, Kafka and PostgreSQL clients, HTTP plumbing, tokens,
rate limits and coupon statuses. Imports only schemas/."""
