"""The paper broker: a simulated venue inside the service (connector, venue, account, feed, store, settings)."""
