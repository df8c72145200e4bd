"""Version and product strings shown by `version`, `sysinfo`, banners and trace headers."""

VERSION = "0.1.0"
PRODUCT = "ecmta"
# What Received headers and the SMTP banner say, in Momentum's shape "ecelerity <ver> r(<rev>)".
BANNER_VERSION = f"{PRODUCT} {VERSION}"
