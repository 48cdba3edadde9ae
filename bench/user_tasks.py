"""User-style tools and questions for bench/bench_local.py (``--set-name user`` / ``heldout``).

Two sets, each with five tools of its own written as a user would (docstrings with Args:
sections, no treadle-specific hints), next to the demo tools (calculator, clock, file reader):

* ``user``: the set the grounding was developed on.
* ``heldout``: different tools of the same kinds (other names, parameter names, return
  formats) and other phrasings, written before the grounding and run only to report.
* ``heldout2``: a third set of tools and phrasings (numeric order ids, lower-case cities,
  curly quotes, a "query" parameter), written after ``heldout`` was run, run once to report.

Every tool answers from fixed data, so answers can be checked. A task is
(kind, question, tool that must be called or None, expected texts, texts that must be absent).
"""

from __future__ import annotations

from typing import Any, Callable

Task = tuple[str, str, "str | None", list[str], list[str]]

# ------------------------------------------------------------------ data shared by both sets
WEATHER = {"oslo": (-4, "light snow"), "paris": (7, "overcast"), "cairo": (24, "sunny"), "tokyo": (11, "clear"),
           "london": (9, "rain"), "new york": (3, "windy"), "sydney": (27, "sunny"), "berlin": (2, "fog"),
           "madrid": (14, "clear"), "mumbai": (31, "humid")}
RATES = {"USD": 1.0, "EUR": 0.92, "GBP": 0.79, "JPY": 150.0, "CHF": 0.88, "EGP": 48.0, "INR": 83.0, "CAD": 1.36,
         "NOK": 10.8, "AUD": 1.52}
ORDERS = {"C3003": "delivered on 2 December", "A1001": "shipped, arriving Friday", "B2002": "being packed",
          "D4004": "cancelled by the customer", "X912": "delayed at customs"}
CONTACTS = {"alice": ("Alice Martin", "alice.martin@example.com", "+47 555 0101"),
            "bob": ("Bob Okafor", "bob.okafor@example.com", "+44 555 0199"),
            "carla": ("Carla Reyes", "carla.reyes@example.com", "+34 555 0123"),
            "dmitri": ("Dmitri Volkov", "dmitri.v@example.com", "+49 555 0142")}
FILES = {"notes.txt": "Team meeting on Thursday at 10:00.\nThe meeting is in room B214.\nBring the Q3 figures.",
         "wifi.txt": "Network: guest-net\nPassword: tulip-4471",
         "menu.md": "Monday: soup\nTuesday: pasta\nWednesday: curry"}


def _convert(amount: float, a: str, b: str) -> float:
    a, b = a.strip().upper(), b.strip().upper()
    if a not in RATES or b not in RATES:
        raise ValueError(f"unknown currency code {a if a not in RATES else b}")
    return round(amount / RATES[a] * RATES[b], 2)


# ------------------------------------------------------------------ the tuning set's tools
def get_weather(city: str) -> str:
    """Get the current weather for a city: temperature in Celsius and conditions.

    Args:
        city: the name of the city, e.g. "Paris"
    """
    t, c = WEATHER.get(city.strip().lower(), (None, None))
    if t is None:
        return f"No weather data for {city}."
    return f"{city.strip().title()}: {t} °C, {c}"


def convert_currency(amount: float, from_currency: str, to_currency: str) -> str:
    """Convert an amount of money from one currency to another at today's rate.

    Args:
        amount: how much money to convert
        from_currency: ISO 4217 code of the currency to convert from, e.g. "USD"
        to_currency: ISO 4217 code of the currency to convert to, e.g. "EUR"
    """
    return f"{amount:g} {from_currency.upper()} = {_convert(amount, from_currency, to_currency):.2f} " \
           f"{to_currency.upper()}"


def order_status(order_id: str) -> str:
    """Look up the delivery status of a customer order.

    Args:
        order_id: the order number, e.g. "A1001"
    """
    s = ORDERS.get(order_id.strip().upper())
    return f"Order {order_id.upper()}: {s}" if s else f"No order {order_id}."


def count_words(text: str) -> int:
    """Count the words in a piece of text.

    Args:
        text: the text whose words are counted
    """
    return len(text.split())


def find_contact(name: str) -> str:
    """Find a person in the address book by first name and return their email and phone number.

    Args:
        name: the person's first name, e.g. "Bob"
    """
    c = CONTACTS.get(name.strip().lower())
    return f"{c[0]}\nEmail: {c[1]}\nPhone: {c[2]}" if c else f"No contact named {name}."


USER_TOOLS: list[Callable[..., Any]] = [get_weather, convert_currency, order_status, count_words, find_contact]

USER_TASKS: list[Task] = [
    ("weather", "What's the weather in Paris?", "get_weather", ["overcast"], []),
    ("weather", "How cold is it in Oslo?", "get_weather", ["-4"], []),
    ("weather", "Is it raining in London right now?", "get_weather", ["rain"], []),
    ("weather", "What is the temperature in Sydney?", "get_weather", ["27"], []),
    ("weather", "Do I need a coat in Berlin today?", "get_weather", ["2"], []),
    ("currency", "Convert 100 USD to EUR.", "convert_currency", ["92.00"], []),
    ("currency", "How many yen for 20 US dollars?", "convert_currency", ["3000.00"], []),
    ("currency", "How much is 50 euros in British pounds?", "convert_currency", ["42.93"], []),
    ("currency", "What is 10 GBP in Swiss francs?", "convert_currency", ["11.14"], []),
    ("currency", "Change 200 Canadian dollars into US dollars.", "convert_currency", ["147.06"], []),
    ("order", "Has order C3003 arrived yet?", "order_status", ["delivered"], []),
    ("order", "Where is my order A1001?", "order_status", ["Friday"], []),
    ("order", "What's the status of order B2002?", "order_status", ["packed"], []),
    ("order", "Check order D4004 for me.", "order_status", ["cancelled"], []),
    ("words", "How many words are in \"The quick brown fox jumps over the lazy dog\"?", "count_words", ["9"], []),
    ("words", "Count the words in 'to be or not to be'.", "count_words", ["6"], []),
    ("words", "How many words does this sentence have: \"I like green tea\"?", "count_words", ["4"], []),
    ("contact", "What is Alice's email address?", "find_contact", ["alice.martin@example.com"], ["+47"]),
    ("contact", "What's Bob's phone number?", "find_contact", ["+44 555 0199"], ["@"]),
    ("contact", "How can I reach Carla?", "find_contact", ["carla"], []),
    ("contact", "Find the contact details for Dmitri.", "find_contact", ["dmitri"], []),
    ("demo", "What time is it in Tokyo?", "current_time", ["<time Asia/Tokyo>"], []),
    ("demo", "What day of the week is it in London?", "current_time", ["<weekday Europe/London>"], [":"]),
    ("demo", "According to notes.txt, which room is the meeting in?", "read_file", ["B214"], ["Q3"]),
    ("demo", "What is the wifi password in wifi.txt?", "read_file", ["tulip-4471"], ["guest-net"]),
    ("demo", "What is 23 * 19?", "calculator", ["437"], []),
    ("no_tool", "What is the capital of Italy?", None, ["rome"], []),
    ("no_tool", "Say hello in Spanish.", None, ["hola"], []),
    ("no_tool", "Hi there!", None, ["hello", "hi"], []),
    ("no_tool", "What colour is grass?", None, ["green"], []),
    ("no_tool", "How many days are in a week?", None, ["7", "seven"], []),
    ("no_tool", "What is the opposite of up?", None, ["down"], []),
]


# ------------------------------------------------------------------ the held-out set's tools
def forecast(location: str) -> dict[str, Any]:
    """Weather report for a place.

    Args:
        location: city to report on
    """
    t, c = WEATHER.get(location.strip().lower(), (None, None))
    if t is None:
        return {"error": f"unknown location {location}"}
    return {"location": location.strip().title(), "temperature_c": t, "sky": c}


def exchange(value: float, source: str, target: str) -> str:
    """Currency exchange calculator.

    Args:
        value: the amount in the source currency
        source: three-letter currency code to exchange from (ISO 4217)
        target: three-letter currency code to exchange into (ISO 4217)
    """
    return f"{_convert(value, source, target):.2f} {target.upper()}"


def shipment(tracking_id: str) -> str:
    """Where is a shipment? Returns its tracking status.

    Args:
        tracking_id: the order or tracking reference, like "C3003"
    """
    s = ORDERS.get(tracking_id.strip().upper())
    return f"{tracking_id.upper()} is {s}." if s else f"Unknown reference {tracking_id}."


def word_count(passage: str) -> str:
    """Number of words in a passage of text.

    Args:
        passage: the passage to count
    """
    return f"{len(passage.split())} words"


def address_book(first_name: str) -> dict[str, str]:
    """Look a person up in the company directory.

    Args:
        first_name: first name of the employee
    """
    c = CONTACTS.get(first_name.strip().lower())
    if c is None:
        return {"error": f"nobody called {first_name}"}
    return {"name": c[0], "email": c[1], "phone": c[2]}


HELDOUT_TOOLS: list[Callable[..., Any]] = [forecast, exchange, shipment, word_count, address_book]

HELDOUT_TASKS: list[Task] = [
    ("weather", "Is it sunny in Cairo?", "forecast", ["sunny"], []),
    ("weather", "How warm is it in Madrid today?", "forecast", ["14"], []),
    ("weather", "Weather report for New York, please.", "forecast", ["windy"], []),
    ("weather", "What's it like outside in Mumbai?", "forecast", ["31", "humid"], []),
    ("currency", "How many euros is 40 dollars?", "exchange", ["36.80"], []),
    ("currency", "Exchange 1000 INR to USD.", "exchange", ["12.05"], []),
    ("currency", "What are 300 Norwegian kroner in euros?", "exchange", ["25.56"], []),
    ("order", "Track shipment X912.", "shipment", ["customs"], []),
    ("order", "Did C3003 get delivered?", "shipment", ["delivered"], []),
    ("order", "Any news on my package A1001?", "shipment", ["Friday"], []),
    ("words", "Give me the word count of \"Rain falls softly on the roof\".", "word_count", ["6"], []),
    ("words", "How long is 'hello big wide world' in words?", "word_count", ["4"], []),
    ("contact", "What's the phone number of Dmitri?", "address_book", ["+49 555 0142"], []),
    ("contact", "Give me Carla's email.", "address_book", ["carla.reyes@example.com"], []),
    ("contact", "Look up Bob in the directory.", "address_book", ["bob"], []),
    ("demo", "What time is it in Paris?", "current_time", ["<time Europe/Paris>"], []),
    ("demo", "Which day is served pasta, according to menu.md?", "read_file", ["Tuesday"], ["curry"]),
    ("demo", "What is 45 + 67?", "calculator", ["112"], []),
    ("no_tool", "What is the capital of Japan?", None, ["tokyo"], []),
    ("no_tool", "Say goodbye in French.", None, ["revoir", "adieu", "bye"], []),
    ("no_tool", "What colour is snow?", None, ["white"], []),
    ("no_tool", "How many hours are in a day?", None, ["24"], []),
]

SETS: dict[str, tuple[list[Callable[..., Any]], list[Task]]] = {"user": (USER_TOOLS, USER_TASKS),
                                                                 "heldout": (HELDOUT_TOOLS, HELDOUT_TASKS)}


# ------------------------------------------------------------------ a second held-out set (after the first ran)
ORDERS2 = {"55012": "out for delivery", "55013": "returned to sender", "AB-77": "awaiting payment"}


def weather_lookup(city_name: str) -> str:
    """Returns today's weather conditions for the given city.

    Args:
        city_name: name of the city (English spelling)
    """
    t, c = WEATHER.get(city_name.strip().lower(), (None, None))
    return f"It is {t} degrees and {c} in {city_name.strip().title()}." if t is not None else "unknown city"


def fx_convert(amount: float, frm: str, to: str) -> dict[str, Any]:
    """Convert between currencies using the latest exchange rates.

    Args:
        amount: amount of money to convert
        frm: currency code like "EUR" (the currency you have)
        to: currency code like "USD" (the currency you want)
    """
    return {"amount": amount, "from": frm.upper(), "to": to.upper(), "result": _convert(amount, frm, to)}


def get_order(order_number: str) -> str:
    """Fetch an order from the shop database and report where it is.

    Args:
        order_number: the order number as printed on the receipt
    """
    s = ORDERS2.get(order_number.strip().upper().lstrip("#"))
    return f"status={s}" if s else "order not found"


def wordcount(sentence: str) -> int:
    """Counts how many words are in a sentence.

    Args:
        sentence: the sentence
    """
    return len(sentence.split())


def contact_lookup(query: str) -> str:
    """Search contacts by first name and get the phone number and email.

    Args:
        query: first name to search for
    """
    c = CONTACTS.get(query.strip().lower())
    return f"{c[0]} | phone {c[2]} | email {c[1]}" if c else "no match"


HELDOUT2_TOOLS: list[Callable[..., Any]] = [weather_lookup, fx_convert, get_order, wordcount, contact_lookup]

HELDOUT2_TASKS: list[Task] = [
    ("weather", "what's the weather like in tokyo", "weather_lookup", ["clear"], []),
    ("weather", "Will I need sunglasses in Sydney?", "weather_lookup", ["sunny"], []),
    ("weather", "Temperature in Berlin?", "weather_lookup", ["2"], []),
    ("currency", "convert 75 CHF to USD", "fx_convert", ["85.23"], []),
    ("currency", "I have 500 rupees, how many dollars is that?", "fx_convert", ["6.02"], []),
    ("currency", "How much is 12 pounds in euros?", "fx_convert", ["13.97"], []),
    ("order", "Where's order #55012?", "get_order", ["out for delivery"], []),
    ("order", "status of order AB-77", "get_order", ["awaiting payment"], []),
    ("order", "Was order 55013 returned?", "get_order", ["returned"], []),
    ("words", "How many words: \"one two three four five\"", "wordcount", ["5"], []),
    ("words", "Count words in \u201cShe sells sea shells\u201d", "wordcount", ["4"], []),
    ("contact", "Bob's email please", "contact_lookup", ["bob.okafor@example.com"], []),
    ("contact", "Call Alice - what's her number?", "contact_lookup", ["+47 555 0101"], []),
    ("contact", "Do we have contact info for Carla?", "contact_lookup", ["carla"], []),
    ("demo", "What time is it in Sydney?", "current_time", ["<time Australia/Sydney>"], []),
    ("demo", "What's 144 divided by 12?", "calculator", ["12"], []),
    ("demo", "Read wifi.txt and give me the network name.", "read_file", ["guest-net"], ["tulip"]),
    ("no_tool", "What is the largest planet?", None, ["jupiter"], []),
    ("no_tool", "Good morning!", None, ["morning", "hello", "hi"], []),
    ("no_tool", "What do bees make?", None, ["honey"], []),
    ("no_tool", "What is the freezing point of water in Celsius?", None, ["0", "zero"], []),
    ("no_tool", "Name a fruit that is yellow.", None, ["banana", "lemon"], []),
]

SETS["heldout2"] = (HELDOUT2_TOOLS, HELDOUT2_TASKS)
