"""The participants of the default reference data (``scenario`` builds the rest).

Settlement banks first (every other participant banks with one of them), then
the energy side (utilities, solar and wind farms, data centres, manufacturers),
then compute and services (AI labs, GPU clouds, AI API providers, lessors, O&M
contractors, EPCs). Every choice comes from the builder's one seeded RNG, in a
fixed order, so the same seed gives the same document.
"""

from __future__ import annotations

import random
import string
from typing import Any

from clearing_core.refdata.codes import lei_check_digits

# Region token -> (display name, country, UTC offset in minutes, local places).
REGIONS: dict[str, tuple[str, str, int, tuple[str, ...]]] = {
    "QINGHAI": ("Qinghai", "CN", 480, ("Golmud", "Delingha", "Gonghe", "Qaidam", "Xining")),
    "GANSU": ("Gansu", "CN", 480, ("Jiuquan", "Dunhuang", "Jiayuguan", "Wuwei", "Zhangye")),
    "INNERMONGOLIA": ("Inner Mongolia", "CN", 480, ("Ordos", "Baotou", "Xilingol", "Chifeng")),
    "NINGXIA": ("Ningxia", "CN", 480, ("Zhongwei", "Yinchuan", "Wuzhong")),
    "XINJIANG": ("Xinjiang", "CN", 480, ("Hami", "Turpan", "Changji")),
    "TEXAS": ("Texas", "US", -360, ("Pecos", "Abilene", "Amarillo", "Midland")),
    "VIRGINIA": ("Virginia", "US", -300, ("Culpeper", "Halifax", "Loudoun", "Prince William")),
    "SHENZHEN": ("Shenzhen", "CN", 480, ("Nanshan", "Longgang", "Bao'an")),
    "SHANGHAI": ("Shanghai", "CN", 480, ("Lingang", "Pudong", "Jiading")),
    "GUIAN": ("Gui'an", "CN", 480, ("Gui'an",)),
    "ULANQAB": ("Ulanqab", "CN", 480, ("Jining",)),
    "ZHONGWEI": ("Zhongwei", "CN", 480, ("Shapotou",)),
    "HONGKONG": ("Hong Kong", "HK", 480, ("Tseung Kwan O", "Kwai Chung", "Tsuen Wan")),
    "SINGAPORE": ("Singapore", "SG", 480, ("Jurong", "Tuas", "Loyang")),
    "GUANGDONG": ("Guangdong", "CN", 480, ("Guangzhou", "Dongguan")),
    "GUIZHOU": ("Guizhou", "CN", 480, ("Guiyang",)),
}
# City code (ids like AILAB-HK-03) -> (display, country).
_CITIES = {
    "HK": ("Hong Kong", "HK"), "SH": ("Shanghai", "CN"), "BJ": ("Beijing", "CN"),
    "SZ": ("Shenzhen", "CN"), "SG": ("Singapore", "SG"), "SF": ("San Francisco", "US"),
    "VA": ("Virginia", "US"), "NY": ("New York", "US"), "XINING": ("Xining", "CN"),
    "LANZHOU": ("Lanzhou", "CN"), "HOHHOT": ("Hohhot", "CN"), "YINCHUAN": ("Yinchuan", "CN"),
    "HOUSTON": ("Houston", "US"), "XIAN": ("Xi'an", "CN"),
}  # fmt: skip
_SUFFIX = {"CN": "Co., Ltd.", "HK": "Limited", "SG": "Pte. Ltd.", "US": "LLC"}
_BIC_LOCATION = {"HK": "HH", "SH": "SH", "BJ": "BJ", "SZ": "SZ", "SG": "SG", "NY": "33"}
_BRANDS = (
    "Aurora", "Baiyun", "Cinder", "Danxia", "Everest", "Feiyun", "Granite", "Huaxing", "Indigo",
    "Jadeite", "Kunlun", "Lumen", "Meridian", "Nanhai", "Orchid", "Polaris", "Qilin", "Redwood",
    "Silkroad", "Tianshan", "Umbra", "Vantage", "Westlake", "Xinghe", "Yunfeng", "Zenith",
    "Harbour", "Lotus", "Summit", "Cobalt", "Pearl", "Tidal", "Sable", "Beacon", "Crescent",
)  # fmt: skip
_LEI_PREFIXES = ("3003", "8356", "2549", "9845", "3358", "7478")

_CNH_RAILS = ("cnh-cips", "cnh-cips", "cnh-cips", "cnh-stable", "cnh-stable")
_USD_RAILS = ("usd-swift", "usd-swift", "usd-swift", "usd-stable", "usd-stable")
_RAIL_BY_CURRENCY = {"CNH": _CNH_RAILS, "USD": _USD_RAILS, "HKD": ("hkd-chats",)}


class Builder:
    """Accumulates the document; every choice comes from one seeded RNG."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.participants: list[dict[str, Any]] = []
        self.banks: dict[str, list[dict[str, Any]]] = {}  # country -> banks
        self.brands = list(_BRANDS)
        self.rng.shuffle(self.brands)
        self.brand_count = 0
        self.meter_counter: dict[str, int] = {}
        self.contracts: list[dict[str, Any]] = []

    def lei(self) -> str:
        alphabet = string.ascii_uppercase + string.digits
        base = self.rng.choice(_LEI_PREFIXES) + "00"
        base += "".join(self.rng.choice(alphabet) for _ in range(12))
        return base + lei_check_digits(base)

    def brand(self) -> str:
        """A made-up brand (no real company names): single words first, then pairs."""
        count, size = self.brand_count, len(self.brands)
        self.brand_count += 1
        first, lap = self.brands[count % size], count // size
        assert lap < size
        return first if lap == 0 else f"{first} {self.brands[(count + lap) % size]}"

    def add(self, pid: str, name: str, roles: list[str], country: str, currencies: list[str],
            *, bic: str | None = None) -> dict[str, Any]:  # fmt: skip
        if bic is None:
            bic = self.rng.choice(self.banks[country])["bic"]
        record: dict[str, Any] = {"participant_id": pid, "name": name, "roles": roles}
        if self.rng.randrange(100) >= 4:  # a few small entities have no LEI yet
            record["lei"] = self.lei()
        record["bic"] = bic
        record["country"] = country
        record["accounts"] = [
            {"currency": c, "rail_id": self.rng.choice(_RAIL_BY_CURRENCY[c])} for c in currencies
        ]
        self.participants.append(record)
        return record


def _add_banks(b: Builder) -> None:
    """Settlement banks: their BICs are the participants' and rail operators' BICs."""
    plan = [("HK", 3), ("SH", 2), ("BJ", 2), ("SZ", 1), ("SG", 2), ("NY", 2)]
    used: set[str] = set()
    for city, count in plan:
        display, country = _CITIES[city]
        for n in range(1, count + 1):
            code = "".join(b.rng.choice(string.ascii_uppercase) for _ in range(4))
            while code in used:
                code = "".join(b.rng.choice(string.ascii_uppercase) for _ in range(4))
            used.add(code)
            bic = f"{code}{country}{_BIC_LOCATION[city]}"
            name = f"{b.brand()} {display} Bank {_SUFFIX[country]}"
            currencies = {"HK": ["CNH", "HKD", "USD"], "CN": ["CNH", "USD"]}.get(country, ["USD"])
            b.banks.setdefault(country, [])
            record = b.add(f"BANK-{city}-{n:02d}", name, ["BANK"], country, currencies, bic=bic)
            b.banks[country].append(record)


def _add_energy_side(b: Builder) -> None:
    """Utilities, generators, data centres and manufacturers."""
    for region, count in [("GUANGDONG", 1), ("SHANGHAI", 1), ("QINGHAI", 1), ("GANSU", 1),
                          ("INNERMONGOLIA", 1), ("GUIZHOU", 1), ("HONGKONG", 1),
                          ("SINGAPORE", 1), ("VIRGINIA", 2), ("TEXAS", 2)]:  # fmt: skip
        display, country, _, _ = REGIONS[region]
        currencies = {"CN": ["CNH"], "HK": ["HKD", "CNH"], "SG": ["USD"]}.get(country, ["USD"])
        for n in range(1, count + 1):
            name = f"{display} Power Grid Retail {_SUFFIX[country]}"
            if count > 1:
                name = f"{b.brand()} {display} Electric {_SUFFIX[country]}"
            b.add(f"UTIL-{region}-{n:02d}", name, ["UTILITY"], country, currencies)
    farms = [("SOLAR", "QINGHAI", 26), ("SOLAR", "GANSU", 16), ("WIND", "GANSU", 10),
             ("WIND", "INNERMONGOLIA", 22), ("SOLAR", "INNERMONGOLIA", 8), ("SOLAR", "NINGXIA", 8),
             ("WIND", "XINJIANG", 8), ("SOLAR", "XINJIANG", 6), ("SOLAR", "TEXAS", 10),
             ("WIND", "TEXAS", 8), ("SOLAR", "VIRGINIA", 6)]  # fmt: skip
    for tech, region, count in farms:
        display, country, _, places = REGIONS[region]
        for n in range(1, count + 1):
            place = places[(n - 1) % len(places)]
            phase = f" Phase {(n - 1) // len(places) + 1}" if n > len(places) else ""
            name = f"{display} {place} {tech.title()} Power{phase} {_SUFFIX[country]}"
            currency = "USD" if country == "US" else "CNH"
            b.add(f"{tech}-{region}-{n:02d}", name, ["GENERATOR"], country, [currency])
    dcs = [("SHENZHEN", 8), ("SHANGHAI", 8), ("GUIAN", 4), ("ULANQAB", 5), ("ZHONGWEI", 3),
           ("HONGKONG", 5), ("SINGAPORE", 6), ("VIRGINIA", 8)]  # fmt: skip
    for region, count in dcs:
        display, country, _, places = REGIONS[region]
        currencies = {"CN": ["CNH"], "HK": ["CNH", "HKD", "USD"], "SG": ["USD"]}.get(
            country, ["USD"]
        )
        for n in range(1, count + 1):
            place = places[(n - 1) % len(places)]
            name = f"{b.brand()} {display} {place} Data Centre {_SUFFIX[country]}"
            b.add(f"DC-{region}-{n:02d}", name, ["DATA_CENTRE"], country, currencies)
    for n in range(1, 9):
        name = f"{b.brand()} Precision Electronics {_SUFFIX['CN']}"
        b.add(f"MFG-DONGGUAN-{n:02d}", name, ["CONSUMER"], "CN", ["CNH"])


def _add_compute_and_services(b: Builder) -> None:
    """AI labs, GPU clouds, AI API providers, lessors, O&M contractors and EPCs."""
    groups = [
        ("AILAB", "AI_LAB", "Intelligence Research", [("HK", 6), ("SH", 6), ("BJ", 6),
                                                       ("SZ", 4), ("SG", 5), ("SF", 5)]),
        ("GPUCLOUD", "GPU_CLOUD", "GPU Cloud", [("SG", 4), ("HK", 3), ("SH", 3), ("BJ", 2),
                                                 ("VA", 4)]),
        ("AIAPI", "AI_PROVIDER", "AI Platform", [("SH", 3), ("BJ", 3), ("HK", 2), ("SG", 2),
                                                  ("SF", 3)]),
        ("LESSOR", "LESSOR", "Financial Leasing", [("HK", 4), ("SH", 3), ("SG", 2)]),
        ("OM", "OM_CONTRACTOR", "Renewables O&M Services", [("XINING", 3), ("LANZHOU", 2),
                                                             ("HOHHOT", 3), ("YINCHUAN", 1),
                                                             ("HOUSTON", 2)]),
        ("EPC", "EPC", "Energy Engineering", [("XIAN", 2), ("BJ", 2), ("SH", 2), ("HOUSTON", 1)]),
    ]  # fmt: skip
    for prefix, role, business, places in groups:
        for city, count in places:
            display, country = _CITIES[city]
            currencies = {"CN": ["CNH", "USD"], "HK": ["CNH", "HKD", "USD"],
                          "SG": ["USD", "CNH"]}.get(country, ["USD"])  # fmt: skip
            if role in {"OM_CONTRACTOR", "EPC"} and country == "CN":
                currencies = ["CNH"]
            for n in range(1, count + 1):
                roles = [role]
                if role == "AI_LAB" and n % 3 == 0:
                    roles.append("AI_PROVIDER")  # labs that also sell their models' API
                name = f"{b.brand()} {display} {business} {_SUFFIX[country]}"
                b.add(f"{prefix}-{city}-{n:02d}", name, roles, country, currencies)


def currencies_of(p: dict[str, Any]) -> list[str]:
    return [a["currency"] for a in p["accounts"]]


def by_prefix(b: Builder, *prefixes: str) -> list[dict[str, Any]]:
    return [p for p in b.participants if p["participant_id"].startswith(prefixes)]


def add_participants(b: Builder) -> None:
    """Banks, then the energy side, then compute and services (the order is part of
    the seeded output)."""
    _add_banks(b)
    _add_energy_side(b)
    _add_compute_and_services(b)
