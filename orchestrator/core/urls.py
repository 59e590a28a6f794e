"""URLs as they may be shown: never with credentials in them."""
import re


def sanitize_url(url: str) -> str:
    """Drop any user:password from a URL before it reaches a message, event or log."""
    return re.sub(r"(://)[^/@]*@", r"\1", url)
