"""A deterministic, offline weather service: the demo's richest upstream.

Every number is derived from a SHA-256 of the city (or region) and the day offset, so
the same question gets the same answer on every machine and no network is touched.
The service offers structured-output tools, a resource and a prompt, which is what the
gateway's catalog and tool finder need to index.

Run: `python -m examples.servers.weather --host 127.0.0.1 --port 8001`
"""

from __future__ import annotations

import datetime
import hashlib
import json
import random
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from examples.servers._http import main

Sky = Literal["sunny", "partly cloudy", "cloudy", "fog", "light rain", "heavy rain", "thunderstorms", "snow"]
Severity = Literal["minor", "moderate", "severe", "extreme"]

CLIMATES: dict[str, float] = {
    "Amsterdam": 11.0,
    "Berlin": 10.5,
    "Buenos Aires": 18.0,
    "Cairo": 23.0,
    "Cape Town": 17.0,
    "London": 12.0,
    "Mumbai": 27.5,
    "New York": 13.0,
    "Paris": 12.5,
    "Reykjavik": 5.0,
    "San Francisco": 15.0,
    "Singapore": 28.0,
    "Sydney": 18.5,
    "Tokyo": 16.0,
    "Toronto": 8.5,
}
"""Annual mean temperature (°C) of the cities with a curated climate; other cities get one from their hash."""

_ALERT_EVENTS: tuple[tuple[str, Severity, str], ...] = (
    ("Heat Advisory", "moderate", "Drink water, avoid strenuous activity between 11:00 and 17:00."),
    ("Flood Watch", "severe", "Avoid low-lying roads and never drive through flooded crossings."),
    ("High Wind Warning", "severe", "Secure loose objects; expect fallen branches and power cuts."),
    ("Winter Storm Watch", "severe", "Postpone travel if possible; keep an emergency kit in the car."),
    ("Dense Fog Advisory", "minor", "Drive slowly with low-beam headlights and leave extra distance."),
    ("Air Quality Alert", "moderate", "Sensitive groups should limit prolonged outdoor exertion."),
    ("Severe Thunderstorm Watch", "extreme", "Move indoors at the first thunder; stay away from windows."),
)
_COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


class ForecastDay(BaseModel):
    """One day of a forecast."""

    date: datetime.date = Field(description="Calendar date of this forecast day (ISO 8601).")
    high_c: float = Field(description="Daytime high in degrees Celsius.")
    low_c: float = Field(description="Overnight low in degrees Celsius.")
    conditions: Sky = Field(description="Dominant sky and precipitation conditions.")
    precipitation_chance: int = Field(ge=0, le=100, description="Chance of precipitation, in percent.")
    wind_kph: int = Field(ge=0, description="Mean wind speed in km/h.")


class Forecast(BaseModel):
    """A multi-day forecast for one city."""

    city: str = Field(description="The city the forecast is for, as normalised by the service.")
    days: list[ForecastDay] = Field(description="One entry per day, starting today.")


class CurrentConditions(BaseModel):
    """The weather observed in a city right now."""

    city: str
    temperature_c: float = Field(description="Air temperature in degrees Celsius.")
    feels_like_c: float = Field(description="Apparent temperature, accounting for wind and humidity.")
    humidity_percent: int = Field(ge=0, le=100)
    wind_kph: int = Field(ge=0)
    wind_direction: str = Field(description="Compass direction the wind blows from, e.g. 'SW'.")
    conditions: Sky
    uv_index: int = Field(ge=0, le=11)


class WeatherAlert(BaseModel):
    """An active official weather warning, watch or advisory."""

    id: str
    event: str = Field(description="Kind of alert, e.g. 'Flood Watch'.")
    severity: Severity
    headline: str
    instructions: str = Field(description="What people in the area should do.")
    effective: datetime.date
    expires: datetime.date


class AlertList(BaseModel):
    """All active alerts for a region (possibly none)."""

    region: str
    alerts: list[WeatherAlert]


def _random_for(*parts: object) -> random.Random:
    """A generator seeded from `parts`, stable across processes (unlike `hash()`)."""
    key = "|".join(str(part).strip().lower() for part in parts)
    return random.Random(int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big"))


def _normalise_city(city: str) -> str:
    stripped = " ".join(city.split())
    for known in CLIMATES:
        if known.lower() == stripped.lower():
            return known
    return stripped.title()


def _mean_temperature(city: str) -> float:
    return CLIMATES.get(city, round(_random_for("climate", city).uniform(4.0, 26.0), 1))


def _sky(chance: int, temperature: float, rng: random.Random) -> Sky:
    if chance >= 70:
        return "snow" if temperature < 1.0 else rng.choice(("heavy rain", "thunderstorms"))
    if chance >= 40:
        return "snow" if temperature < 1.0 else "light rain"
    if chance >= 20:
        return rng.choice(("partly cloudy", "cloudy", "fog"))
    return rng.choice(("sunny", "sunny", "partly cloudy"))


def _forecast_day(city: str, offset: int, today: datetime.date) -> ForecastDay:
    rng = _random_for("forecast", city, offset)
    mean = _mean_temperature(city) + rng.uniform(-4.0, 4.0)
    spread = rng.uniform(4.0, 11.0)
    chance = rng.randrange(0, 101, 5)
    return ForecastDay(
        date=today + datetime.timedelta(days=offset),
        high_c=round(mean + spread / 2, 1),
        low_c=round(mean - spread / 2, 1),
        conditions=_sky(chance, mean, rng),
        precipitation_chance=chance,
        wind_kph=rng.randint(2, 45),
    )


def _alert(region: str, index: int, today: datetime.date) -> WeatherAlert:
    rng = _random_for("alert", region, index)
    event, severity, instructions = rng.choice(_ALERT_EVENTS)
    starts = today + datetime.timedelta(days=rng.randint(0, 1))
    return WeatherAlert(
        id=f"{region.lower().replace(' ', '-')}-{index + 1}",
        event=event,
        severity=severity,
        headline=f"{event} in effect for {region}",
        instructions=instructions,
        effective=starts,
        expires=starts + datetime.timedelta(days=rng.randint(1, 3)),
    )


CityName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        description="City name in plain English, e.g. 'Paris' or 'San Francisco'. Case-insensitive.",
    ),
]


def create_server() -> MCPServer[Any]:
    """Build the weather server; it keeps no state, so every call is independent."""
    server: MCPServer[Any] = MCPServer(
        "weather",
        title="Weather (offline demo)",
        instructions="Fake but deterministic weather data for demos and tests. Temperatures are in °C, wind in km/h.",
        version="1.0.0",
    )
    read_only = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(title="Daily weather forecast", annotations=read_only)
    def get_forecast(
        city: CityName,
        days: Annotated[int, Field(ge=1, le=7, description="Number of days to forecast, from today (1-7).")] = 3,
    ) -> Forecast:
        """Get the daily weather forecast for a city: high and low temperature (°C), sky conditions,
        chance of precipitation and wind speed for each of the next few days. Use it to plan trips,
        events or outdoor activities, or to answer 'will it rain tomorrow?'."""
        name = _normalise_city(city)
        today = datetime.date.today()
        return Forecast(city=name, days=[_forecast_day(name, offset, today) for offset in range(days)])

    @server.tool(title="Current weather conditions", annotations=read_only)
    def get_current_conditions(city: CityName) -> CurrentConditions:
        """Get the weather in a city right now: temperature and feels-like temperature (°C), humidity,
        wind speed and direction, sky conditions and UV index."""
        name = _normalise_city(city)
        today = _forecast_day(name, 0, datetime.date.today())
        rng = _random_for("now", name)
        temperature = round(rng.uniform(today.low_c, today.high_c), 1)
        wind_chill = today.wind_kph / 10 if temperature < 10 else 0.0
        return CurrentConditions(
            city=name,
            temperature_c=temperature,
            feels_like_c=round(temperature - wind_chill, 1),
            humidity_percent=min(100, 35 + today.precipitation_chance // 2 + rng.randint(0, 15)),
            wind_kph=today.wind_kph,
            wind_direction=rng.choice(_COMPASS),
            conditions=today.conditions,
            uv_index=0 if today.conditions in ("heavy rain", "thunderstorms", "snow") else rng.randint(1, 11),
        )

    @server.tool(title="Active weather alerts", annotations=read_only)
    def list_weather_alerts(
        region: Annotated[
            str,
            Field(
                min_length=1,
                max_length=100,
                description="Region, state, province or country to check, e.g. 'California' or 'Bavaria'.",
            ),
        ],
    ) -> AlertList:
        """List active severe-weather alerts (warnings, watches and advisories such as flood watches,
        heat advisories or winter storm warnings) for a region, with severity, validity dates and
        safety instructions. An empty list means no alerts are in effect."""
        name = " ".join(region.split())
        count = _random_for("alert-count", name).choice((0, 0, 1, 1, 2))
        today = datetime.date.today()
        return AlertList(region=name, alerts=[_alert(name, index, today) for index in range(count)])

    @server.resource(
        "weather://cities",
        name="cities",
        title="Cities with curated climates",
        description="Cities whose forecasts follow a curated climate profile, with their annual mean "
        "temperature in °C. Any other city name also works, with a climate derived from its name.",
        mime_type="application/json",
    )
    def cities() -> str:
        return json.dumps([{"city": city, "annual_mean_c": mean} for city, mean in CLIMATES.items()], indent=2)

    @server.prompt(title="Plan an outdoor day")
    def plan_outdoor_day(
        city: Annotated[str, Field(description="City where the outdoor day will take place.")],
    ) -> str:
        """Plan a day outdoors in a city around its current weather, forecast and alerts."""
        return (
            f"I want to spend tomorrow outdoors in {city}. Check the current conditions, the 2-day "
            f"forecast and any weather alerts for {city} with the weather tools, then suggest a plan "
            "for the morning, afternoon and evening: what to do, what to wear and what to bring. "
            "If the weather looks bad, propose indoor alternatives and say why."
        )

    return server


if __name__ == "__main__":
    main(create_server())
