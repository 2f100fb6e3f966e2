"""frugate gateway: the HTTP service, its request pipeline, tenancy and accounting."""

__version__ = "0.1.0"
