"""Small normalisation tables for grounding a tool's arguments in a question (``_grounding``).

They turn what a question writes into what a tool's description asks for, when the
description asks for a standard form:

* ``CURRENCIES``: currency names and symbols -> ISO 4217 codes ("yen" -> "JPY"), for a
  parameter described as an ISO 4217 / three-letter currency code. The world's most traded
  currencies and a few more; an ISO code written in the question is used as it is.
* ``CITY_ZONES``: major cities -> IANA time zones ("Tokyo" -> "Asia/Tokyo"), for a parameter
  described as an IANA time zone. About sixty of the largest / best-known cities; a zone
  name written in the question ("Europe/Oslo", "UTC") is used as it is.
* ``TOPICS`` / ``RELATED``: a small thesaurus of everyday words that point to a topic a tool
  may be about ("cold" -> weather, temperature): a question about the topic rarely names it.
* ``NOT_NAMES``: capitalised words that are neither places nor people (units, languages).

They are data, not per-tool code: add to them freely.
"""

from __future__ import annotations

__all__ = ["CITY_ZONES", "CURRENCIES", "CURRENCY_SYMBOLS", "NOT_NAMES", "RELATED", "TOPICS"]

CURRENCIES: dict[str, str] = {
    "us dollar": "USD", "us dollars": "USD", "u.s. dollars": "USD", "american dollars": "USD", "dollar": "USD",
    "dollars": "USD", "bucks": "USD", "euro": "EUR", "euros": "EUR", "pound": "GBP", "pounds": "GBP",
    "british pound": "GBP", "british pounds": "GBP", "pound sterling": "GBP", "sterling": "GBP", "quid": "GBP",
    "yen": "JPY", "japanese yen": "JPY", "swiss franc": "CHF", "swiss francs": "CHF", "franc": "CHF",
    "francs": "CHF", "egyptian pound": "EGP", "egyptian pounds": "EGP", "rupee": "INR", "rupees": "INR",
    "indian rupee": "INR", "indian rupees": "INR", "canadian dollar": "CAD", "canadian dollars": "CAD",
    "australian dollar": "AUD", "australian dollars": "AUD", "new zealand dollar": "NZD",
    "new zealand dollars": "NZD", "hong kong dollar": "HKD", "hong kong dollars": "HKD",
    "singapore dollar": "SGD", "singapore dollars": "SGD", "norwegian krone": "NOK", "norwegian kroner": "NOK",
    "swedish krona": "SEK", "swedish kronor": "SEK", "danish krone": "DKK", "danish kroner": "DKK",
    "yuan": "CNY", "renminbi": "CNY", "chinese yuan": "CNY", "korean won": "KRW", "peso": "MXN", "pesos": "MXN",
    "mexican peso": "MXN", "mexican pesos": "MXN", "brazilian real": "BRL", "brazilian reais": "BRL",
    "rouble": "RUB", "roubles": "RUB", "ruble": "RUB", "rubles": "RUB", "zloty": "PLN", "zlotys": "PLN",
    "turkish lira": "TRY", "lira": "TRY", "rand": "ZAR", "south african rand": "ZAR", "dirham": "AED",
    "dirhams": "AED", "saudi riyal": "SAR", "riyal": "SAR", "riyals": "SAR", "baht": "THB", "thai baht": "THB",
    "shekel": "ILS", "shekels": "ILS", "forint": "HUF", "czech koruna": "CZK", "koruna": "CZK",
}
CURRENCY_SYMBOLS: dict[str, str] = {"$": "USD", "\u20ac": "EUR", "\u00a3": "GBP", "\u00a5": "JPY", "\u20b9": "INR"}
ISO_CURRENCIES = frozenset(CURRENCIES.values()) | frozenset(
    "ARS CLP COP IDR MYR PHP VND NGN KES PKR BDT UAH RON BGN ISK".split())

CITY_ZONES: dict[str, str] = {
    "london": "Europe/London", "paris": "Europe/Paris", "berlin": "Europe/Berlin", "madrid": "Europe/Madrid",
    "rome": "Europe/Rome", "amsterdam": "Europe/Amsterdam", "brussels": "Europe/Brussels",
    "vienna": "Europe/Vienna", "zurich": "Europe/Zurich", "geneva": "Europe/Zurich", "oslo": "Europe/Oslo",
    "stockholm": "Europe/Stockholm", "copenhagen": "Europe/Copenhagen", "helsinki": "Europe/Helsinki",
    "dublin": "Europe/Dublin", "lisbon": "Europe/Lisbon", "warsaw": "Europe/Warsaw", "prague": "Europe/Prague",
    "athens": "Europe/Athens", "istanbul": "Europe/Istanbul", "moscow": "Europe/Moscow", "kyiv": "Europe/Kyiv",
    "cairo": "Africa/Cairo", "lagos": "Africa/Lagos", "nairobi": "Africa/Nairobi",
    "johannesburg": "Africa/Johannesburg", "dubai": "Asia/Dubai", "riyadh": "Asia/Riyadh",
    "tehran": "Asia/Tehran", "karachi": "Asia/Karachi", "mumbai": "Asia/Kolkata", "delhi": "Asia/Kolkata",
    "new delhi": "Asia/Kolkata", "bangalore": "Asia/Kolkata", "dhaka": "Asia/Dhaka", "bangkok": "Asia/Bangkok",
    "jakarta": "Asia/Jakarta", "singapore": "Asia/Singapore", "kuala lumpur": "Asia/Kuala_Lumpur",
    "hong kong": "Asia/Hong_Kong", "shanghai": "Asia/Shanghai", "beijing": "Asia/Shanghai",
    "taipei": "Asia/Taipei", "seoul": "Asia/Seoul", "tokyo": "Asia/Tokyo", "osaka": "Asia/Tokyo",
    "manila": "Asia/Manila", "sydney": "Australia/Sydney", "melbourne": "Australia/Melbourne",
    "perth": "Australia/Perth", "auckland": "Pacific/Auckland", "honolulu": "Pacific/Honolulu",
    "los angeles": "America/Los_Angeles", "san francisco": "America/Los_Angeles",
    "seattle": "America/Los_Angeles", "vancouver": "America/Vancouver", "denver": "America/Denver",
    "chicago": "America/Chicago", "houston": "America/Chicago", "mexico city": "America/Mexico_City",
    "new york": "America/New_York", "boston": "America/New_York", "washington": "America/New_York",
    "miami": "America/New_York", "toronto": "America/Toronto", "montreal": "America/Toronto",
    "bogota": "America/Bogota", "lima": "America/Lima", "santiago": "America/Santiago",
    "buenos aires": "America/Argentina/Buenos_Aires", "sao paulo": "America/Sao_Paulo",
    "rio de janeiro": "America/Sao_Paulo", "reykjavik": "Atlantic/Reykjavik",
}

# topics: a question word of a topic brings all the topic's words (a question about the weather
# rarely says "weather": "how cold is it?", "do I need sunglasses?")
TOPICS: tuple[frozenset[str], ...] = (
    frozenset("weather temperature forecast climate conditions cold hot warm chilly freezing rain raining rainy "
              "sunny sun snow snowing wind windy cloudy umbrella coat jacket sunglasses sunscreen outside degrees "
              "humid humidity storm".split()),
    frozenset({"currency", "currencies", "money", "exchange", "convert", "conversion", "worth", "rate",
               *(n.split()[-1] for n in CURRENCIES if n.split()[-1] not in ("won", "real"))}),
    frozenset("order orders shipment shipping delivery delivered deliver status tracking track arrived arrive "
              "shipped package parcel dispatched".split()),
    frozenset("contact contacts email mail phone reach call address directory person number".split()),
    frozenset("word words count length long".split()),
)
RELATED: dict[str, tuple[str, ...]] = {}
for _topic in TOPICS:
    for _w in _topic:
        RELATED[_w] = tuple(sorted({*RELATED.get(_w, ()), *_topic}))

# capitalised words that are not places or people ("in Celsius", "in French")
NOT_NAMES = frozenset(
    "celsius fahrenheit kelvin english french spanish german italian portuguese chinese mandarin japanese "
    "russian arabic hindi dutch korean latin greek swedish norwegian polish turkish english".split())
