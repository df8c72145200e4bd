from ecmta.tests.custom_logger.helpers import servers  # noqa: F401  (fixture)
