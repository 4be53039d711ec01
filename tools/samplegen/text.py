"""Word lists for the offline sample: post templates, invented names, places.

Everything here is invented except city names. Templates never contain `#`: the generator inserts
every hashtag itself, so it knows each one's offsets.
"""

# ruff: noqa: RUF001 - letters that resemble Latin ones are the point of multilingual text

from __future__ import annotations

import unicodedata
from typing import Final


def _nfd(text: str) -> str:
    # Some clients send decomposed accents (e + U+0301); consumers must not assume NFC text.
    return unicodedata.normalize("NFD", text)


# Tweet languages and how often an author writes mainly in each (integer weights, see sample.py).
AUTHOR_LANGS: Final[tuple[tuple[str, int], ...]] = (
    ("en", 30),
    ("es", 6),
    ("pt", 6),
    ("ja", 6),
    ("de", 5),
    ("fr", 5),
    ("ar", 4),
    ("hi", 4),
    ("zh", 4),
    ("he", 3),
    ("ru", 3),
    ("ko", 3),
    ("it", 3),
    ("nl", 3),
    ("tr", 3),
    ("pl", 3),
    ("id", 3),
    ("sv", 2),
    ("uk", 2),
    ("vi", 2),
)

# `{topic}` takes a phrase from TOPICS; `{h}` is where the first hashtag goes.
EN_TEMPLATES: Final = (
    "Finally got {topic} working end to end. Took three tries and one very long coffee ☕",
    "Hot take: {topic} is 20% tooling and 80% talking to people.",
    "Writing up our notes on {topic} for the team wiki. What would you want to read first?",
    "Reminder: {topic} is a journey, not a ticket in the backlog.",
    "Spent the morning untangling {topic}. Slides from the meetup are coming soon.",
    "How do you explain {topic} to a new hire in five minutes?",
    "We cut our pager noise in half after revisiting {topic}.",
    "TIL: {topic} gets a lot easier once the dashboards tell the truth.",
    "Pairing session today on {topic} 👩‍💻👨‍💻",
    "New blog post: lessons from a year of {topic}.",
    "Our on-call rotation has opinions about {topic} 😅",
    "Shipping small, shipping often. Today's focus: {topic}.",
    "Looking for reading suggestions on {topic} 📚",
    "Late-night incident, early-morning retro. The retro was about {topic}.",
    "If your {topic} story needs a 40-slide deck, start smaller.",
    _nfd("Naïve retry loops strike again. Rewriting {topic} this sprint."),
    "Demo day! Showing {topic} to the whole org at 3pm 🎉",
    "Three things I wish I knew before starting with {h}: ownership, budgets, patience.",
    "Quick poll: who owns {topic} in your company?",
    "Small win: {topic} is now documented, tested and boring. Boring is good.",
    _nfd("Café chats beat meetings. Today's topic: {topic}."),
)

TOPICS: Final[dict[str, tuple[str, ...]]] = {
    "#openbanking": (
        "consent flows for account access",
        "PSD2 payment initiation",
        "the new account aggregation API",
        "FAPI-compliant token endpoints",
        "sandbox onboarding for fintech partners",
    ),
    "#remediation": (
        "vulnerability remediation",
        "patching the base images",
        "our remediation backlog",
        "auto-remediation runbooks",
        "dependency upgrades after the audit",
    ),
    "#devops": (
        "the deploy pipeline",
        "trunk-based development",
        "infrastructure as code",
        "our CI cache",
        "blue-green releases",
    ),
    "#sre": (
        "error budgets",
        "SLO reviews",
        "toil reduction",
        "blameless postmortems",
        "the on-call handbook",
    ),
    "#microservices": (
        "service boundaries",
        "the strangler-fig migration",
        "contract tests between services",
        "retry storms",
        "the service mesh rollout",
    ),
    "#observability": (
        "structured logging",
        "high-cardinality traces",
        "the new tracing dashboards",
        "exemplars linking metrics to traces",
        "sampling strategies",
    ),
    "#oauth": (
        "PKCE for mobile clients",
        "refresh token rotation",
        "scopes versus roles",
        "the device authorization flow",
        "short-lived access tokens",
    ),
    "#metrics": (
        "RED metrics",
        "histogram buckets",
        "p99 latency panels",
        "cardinality budgets",
        "the capacity dashboard",
    ),
    "#logmonitoring": (
        "log alert rules",
        "parsing JSON logs",
        "log retention policies",
        "noisy log alerts",
    ),
}

TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "es": (
        "Hoy migramos otro servicio a la nueva plataforma. Todo en verde ✅",
        "¿Alguien tiene buenas prácticas de {h} para equipos pequeños?",
        "Charla de mañana: cómo medir lo que de verdad importa. ¡Nos vemos en el meetup!",
        "Tres semanas sin incidentes graves. El equipo se lo merece 🎉",
        _nfd("Pequeño cambio, gran impacto: bajamos la latencia un 30 %."),
    ),
    "pt": (
        "Mais um deploy tranquilo numa sexta-feira. Quem nunca? 😅",
        "Estamos contratando para o time de plataforma! Remoto ou em São Paulo.",
        "Revisamos os alertas e cortamos metade do ruído 🇧🇷",
        "Alguém já usou {h} em produção com tráfego alto?",
        _nfd("Documentação boa vale mais que mil reuniões."),
    ),
    "de": (
        "Heute endlich die alten Dashboards aufgeräumt. Fühlt sich gut an.",
        "Wer kommt zum Meetup am Donnerstag? Thema: Betrieb im großen Maßstab.",
        "Kleine Schritte, häufige Releases – das zahlt sich aus.",
        "Grüße vom Retro-Workshop 🇩🇪 Viel gelernt über {h} und Teamarbeit.",
    ),
    "fr": (
        _nfd("Petit retour d'expérience sur notre dernier incident. Désolé pour le retard 🙏"),
        "Café ☕ + revue de code = bonne journée",
        "On recrute ! Équipe plateforme, télétravail possible.",
        "Quelqu'un a un bon tuto sur {h} ? Merci d'avance",
        "Migration terminée sans interruption de service. Bravo l'équipe 🎉",
    ),
    "it": (
        "Oggi abbiamo ripulito le dashboard, finalmente ☕",
        "Qualcuno usa {h} in produzione? Consigli benvenuti",
        "Rilascio del venerdì andato liscio 🇮🇹",
        "Bella sessione al meetup: meno allarmi, più segnali.",
    ),
    "nl": (
        "Vandaag eindelijk de oude alerts opgeruimd 🎉",
        "Wie gebruikt {h} al in productie? Benieuwd naar ervaringen.",
        "Mooie sessie over betrouwbaarheid op de meetup 🇳🇱",
        "Kleine releases, minder stress. Zo simpel is het (bijna).",
    ),
    "sv": (
        "Idag städade vi äntligen bland larmen 🎉",
        "Någon som kör {h} i produktion? Tips uppskattas.",
        "Fika och kodgranskning, bästa kombon ☕",
    ),
    "pl": (
        "Dziś w końcu uporządkowaliśmy alerty 🎉",
        "Ktoś używa {h} na produkcji? Chętnie posłucham.",
        "Świetne spotkanie o niezawodności systemów 🇵🇱",
    ),
    "tr": (
        "Bugün yeni izleme panosunu yayına aldık 🚀",
        "{h} konusunda iyi kaynak önerisi olan var mı?",
        "Cuma günü deploy, hafta sonu huzur 😅",
    ),
    "id": (
        "Hari ini kami merapikan dashboard pemantauan 🚀",
        "Ada yang pakai {h} di production? Boleh berbagi pengalaman.",
        "Rilis hari Jumat berjalan lancar, terima kasih tim 🙏",
    ),
    "vi": (
        _nfd("Hôm nay đội mình đã dọn dẹp lại dashboard 🚀"),
        "Có ai dùng {h} trong production chưa? Chia sẻ kinh nghiệm với!",
        "Buổi chia sẻ về vận hành hệ thống rất bổ ích 🙏",
    ),
    "ru": (
        "Сегодня наконец-то навели порядок в алертах 🚀",
        "Кто использует {h} в продакшене? Поделитесь опытом.",
        "Ретро после инцидента — лучшее время для улучшений.",
    ),
    "uk": (
        "Сьогодні нарешті впорядкували алерти 🚀",
        "Хто використовує {h} у продакшні? Поділіться досвідом.",
        "Гарна ретроспектива після інциденту 🇺🇦",
    ),
    "ja": (
        "今日はダッシュボードを整理しました。アラートが半分に減った 🎉",
        "新しいチームで {h} の勉強会を始めます",
        "障害対応の振り返り会、学びが多かった 👩‍💻",
        "金曜日のリリース、無事に完了しました 🇯🇵",
    ),
    "zh": (
        "今天终于把告警规则整理好了 🚀",
        "团队在讨论 {h} 的最佳实践，欢迎交流",
        "周五发布，周末安心。",
    ),
    "ko": (
        "오늘 배포 파이프라인을 정리했습니다 🚀",
        "{h} 스터디 모집합니다! 관심 있는 분 환영",
        "장애 회고에서 많이 배웠어요 👩‍💻",
    ),
    "ar": (
        "أطلقنا اليوم لوحة مراقبة جديدة للفريق 🚀",
        "ما هي أفضل الممارسات في {h}؟ نبدأ التجربة هذا الأسبوع",
        "ورشة عمل رائعة عن الأتمتة والتشغيل 👩‍💻",
    ),
    "he": (
        "היום סיימנו להעביר עוד שירות לפלטפורמה החדשה 🎉",
        "שאלה לקהילה: איך אתם עושים {h} בפרודקשן?",
        "מפגש מעולה על אמינות מערכות 🇮🇱",
    ),
    "hi": (
        "आज हमने नया मॉनिटरिंग डैशबोर्ड लॉन्च किया 🚀",
        "टीम के साथ {h} पर अच्छी चर्चा हुई",
        "रिलीज़ सफल रही, सबको धन्यवाद 🙏",
    ),
    # X marks posts it cannot classify (emoji, version strings, hashtags only) as `und`.
    "und": (
        "🚀🚀🚀",
        "✅✅✅",
        "📈📉📈",
        "v2.4.0 🎉",
        "👩‍💻☕",
        "🇧🇷🇵🇹🇯🇵🇳🇬",
        "1️⃣ 2️⃣ 3️⃣",
        "🧑🏽‍🔧🛠️",
    ),
}

# Decorations around a post; many span several code points (ZWJ, skin tones, flags, keycaps).
EMOJI: Final = (
    "🚀",
    "✅",
    "🎉",
    "🔥",
    "📈",
    "🛠️",
    "☕",
    "👩‍💻",
    "👨‍💻",
    "🧑🏽‍🔧",
    "👩🏾‍🚀",
    "🇧🇷",
    "🇯🇵",
    "🇩🇪",
    "🇮🇳",
    "🇳🇬",
    "❤️",
    "1️⃣",
    "⚠️",
    "🤝🏻",
)

# Hashtags that are not searched; `oauth2` and `devopsdays` are near misses of searched tags.
EXTRA_HASHTAGS: Final = (
    "kubernetes",
    "k8s",
    "cloudnative",
    "platformengineering",
    "SLO",
    "grafana",
    "prometheus",
    "security",
    "API",
    "golang",
    "python",
    "rustlang",
    "opentelemetry",
    "incidentresponse",
    "chaosengineering",
    "fintech",
    "PSD2",
    "oauth2",
    "devopsdays",
    "CVE",
)
NATIVE_HASHTAGS: Final[dict[str, tuple[str, ...]]] = {
    "ja": ("可観測性", "インフラ"),
    "zh": ("运维",),
    "ko": ("개발자",),
    "ar": ("تقنية",),
    "he": ("פיתוח",),
    "hi": ("तकनीक",),
    "ru": ("разработка",),
}

# Mixed-case spellings people use; X returns them for a lower-case query, entity tag as typed.
CASE_VARIANTS: Final[dict[str, str]] = {
    "#openbanking": "OpenBanking",
    "#remediation": "Remediation",
    "#devops": "DevOps",
    "#sre": "SRE",
    "#microservices": "Microservices",
    "#observability": "Observability",
    "#oauth": "OAuth",
    "#metrics": "Metrics",
    "#logmonitoring": "LogMonitoring",
}

# Building blocks of invented handles and names.
SYLLABLES: Final = (
    "ka",
    "ro",
    "mi",
    "ze",
    "lo",
    "ra",
    "nu",
    "sel",
    "dor",
    "fin",
    "bri",
    "ta",
    "vek",
    "lin",
    "mar",
    "sol",
    "tev",
    "ori",
    "pel",
    "quin",
    "dar",
    "ely",
    "zan",
    "mo",
    "rin",
    "kel",
    "avo",
    "ul",
    "ber",
    "tor",
    "nix",
    "jun",
)
HANDLE_SUFFIXES: Final = ("ops", "dev", "sre", "io", "codes", "cloud", "infra", "data", "sec", "hq")
# Random syllables can spell unwanted words; names containing these are redrawn.
BLOCKED_FRAGMENTS: Final = (
    "ass",
    "sex",
    "fag",
    "nig",
    "cum",
    "kkk",
    "nazi",
    "fuc",
    "fuk",
    "shit",
    "tit",
    "dic",
    "cock",
    "porn",
    "rape",
    "slut",
    "puta",
    "kill",
    "anal",
    "hitl",
)
NAME_DECORATIONS: Final = ("☁️", "🛠️", "| platform", "| on call", "👩‍💻", "🇳🇬", "🇧🇷", "(she/her)")
TEAM_WORDS: Final = ("Platform Team", "SRE Guild", "Infra Notes", "Ops Weekly", "Dev Collective")
NATIVE_NAMES: Final[dict[str, tuple[str, ...]]] = {
    "ja": ("インフラ改善チーム", "夜間当番エンジニア", "クラウド職人"),
    "zh": ("云原生运维组", "凌晨值班工程师"),
    "ko": ("플랫폼 엔지니어링 팀", "새벽 배포 요정"),
    "ar": ("مجتمع المطورين", "فريق المنصة"),
    "he": ("צוות התשתיות", "קהילת הפיתוח"),
    "hi": ("डेवऑप्स समुदाय", "क्लाउड इंजीनियर"),
    "ru": ("Команда платформы", "Дежурный инженер"),
    "uk": ("Спільнота інженерів",),
}
LOCATIONS: Final = (
    "Lisboa",
    "Remote 🌍",
    "Berlin, Germany",
    "Bengaluru",
    "São Paulo, Brasil",
    "東京",
    "서울",
    "القاهرة",
    "תל אביב",
    "Lagos, Nigeria",
    "Toronto",
    "localhost",
    "127.0.0.1",
    "between deploys",
    "Madrid",
    "Paris",
    "Warszawa",
    "İstanbul",
    "Jakarta",
    "Stockholm",
    "Kyiv",
    "Hà Nội",
    "Amsterdam",
    "Milano",
    "上海",
    "Dublin",
    "Austin, TX",
    "the cloud ☁️",
)

# (full_name, country, country_code, languages whose authors plausibly post from there)
PLACES: Final[tuple[tuple[str, str, str, str], ...]] = (
    ("San Francisco, CA", "United States", "US", "en es"),
    ("Austin, TX", "United States", "US", "en es"),
    ("Brooklyn, NY", "United States", "US", "en"),
    ("London, England", "United Kingdom", "GB", "en"),
    ("Manchester, England", "United Kingdom", "GB", "en"),
    ("Dublin City, Ireland", "Ireland", "IE", "en"),
    ("Toronto, Ontario", "Canada", "CA", "en fr"),
    ("Montréal, Québec", "Canada", "CA", "fr en"),
    ("Sydney, New South Wales", "Australia", "AU", "en"),
    ("Bengaluru, India", "India", "IN", "en hi"),
    ("Pune, India", "India", "IN", "hi en"),
    ("Lagos, Nigeria", "Nigeria", "NG", "en"),
    ("Nairobi, Kenya", "Kenya", "KE", "en"),
    ("Singapore", "Singapore", "SG", "en zh"),
    ("Madrid, Comunidad de Madrid", "Spain", "ES", "es"),
    ("Barcelona, Cataluña", "Spain", "ES", "es"),
    ("Guadalajara, Jalisco", "Mexico", "MX", "es"),
    ("Buenos Aires, Argentina", "Argentina", "AR", "es"),
    ("São Paulo, Brasil", "Brazil", "BR", "pt"),
    ("Lisboa, Portugal", "Portugal", "PT", "pt"),
    ("Berlin, Deutschland", "Germany", "DE", "de"),
    ("München, Bayern", "Germany", "DE", "de"),
    ("Zürich, Schweiz", "Switzerland", "CH", "de fr it"),
    ("Paris, France", "France", "FR", "fr"),
    ("Lyon, France", "France", "FR", "fr"),
    ("Milano, Lombardia", "Italy", "IT", "it"),
    ("Amsterdam, Nederland", "The Netherlands", "NL", "nl"),
    ("Stockholm, Sverige", "Sweden", "SE", "sv"),
    ("Kraków, Polska", "Poland", "PL", "pl"),
    ("İstanbul, Türkiye", "Türkiye", "TR", "tr"),
    ("Kyiv, Ukraine", "Ukraine", "UA", "uk ru"),
    ("Almaty, Kazakhstan", "Kazakhstan", "KZ", "ru"),
    ("Tel Aviv-Yafo, Israel", "Israel", "IL", "he"),
    ("Dubai, United Arab Emirates", "United Arab Emirates", "AE", "ar en"),
    ("Cairo, Egypt", "Egypt", "EG", "ar"),
    ("Shibuya-ku, Tokyo", "Japan", "JP", "ja"),
    ("Osaka-shi, Osaka", "Japan", "JP", "ja"),
    ("Seoul, Republic of Korea", "Republic of Korea", "KR", "ko"),
    ("Shenzhen, Guangdong", "China", "CN", "zh"),
    ("Jakarta, Indonesia", "Indonesia", "ID", "id"),
    ("Hà Nội, Việt Nam", "Vietnam", "VN", "vi"),
)
