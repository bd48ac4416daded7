"""celery-xray: the kit that makes Celery's internals visible."""
