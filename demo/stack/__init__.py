"""Start and stop the parts the tutorial needs: Redis, an SMTP sink, workers, Flower."""
