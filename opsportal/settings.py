"""OpsPortal settings: every value comes from the environment (see .env.example).

Embedded defaults let a new user try the portal with nothing installed: SQLite in WAL
mode and a filesystem Celery broker, both under var/. Production sets DATABASE_URL
(PostgreSQL) and CELERY_BROKER_URL (Redis or RabbitMQ).
"""

from pathlib import Path

import environ
from cryptography.fernet import Fernet
from csp.constants import NONCE, NONE, SELF
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
ENV_FILE = env.str("OPSPORTAL_ENV_FILE", default=str(BASE_DIR / ".env"))
if Path(ENV_FILE).is_file():
    environ.Env.read_env(ENV_FILE)

VAR_DIR = Path(env.str("OPSPORTAL_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET_KEY = "insecure-development-key-only-valid-with-DEBUG-true"  # noqa: S105 (refused unless DEBUG)
SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else []
)
if not DEBUG:
    if not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 32:
        raise ImproperlyConfigured(
            "DEBUG is off, so SECRET_KEY must be set to a random value of at least 32 "
            "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DEBUG is off, so ALLOWED_HOSTS must list the host names the portal is served "
            "under (comma-separated), e.g. ALLOWED_HOSTS=ops.example.com."
        )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# Secrets of registered systems (passwords, TLS keys, tokens) are encrypted at rest with
# these Fernet keys; the first encrypts, all decrypt, so keys can be rotated.
SECRETS_ENCRYPTION_KEYS = env.list("SECRETS_ENCRYPTION_KEYS", default=[])

# --- Production refusals (issue 9, hole 14) ------------------------------------------------
# Stored secrets need their own key: one derived from SECRET_KEY would be lost (and every
# stored password with it) the day SECRET_KEY is rotated, and leaks with it.
_FERNET_KEY_HINT = (
    "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
)
if not DEBUG and not SECRETS_ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "DEBUG is off, so SECRETS_ENCRYPTION_KEYS must be set: the Fernet key(s) that encrypt "
        "stored passwords, TLS keys and tokens (comma-separated, newest first). "
        f"Make one with: {_FERNET_KEY_HINT}"
    )
for _key in SECRETS_ENCRYPTION_KEYS:
    try:
        Fernet(_key)
    except ValueError:
        raise ImproperlyConfigured(
            "SECRETS_ENCRYPTION_KEYS holds a value that is not a Fernet key (32 url-safe "
            f"base64-encoded bytes). Make one with: {_FERNET_KEY_HINT}"
        ) from None
# /metrics tells an outsider every system's name, state and figures: production needs a
# token, unless the operator says on purpose that the endpoint is public.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=False)
if not DEBUG and not METRICS_TOKEN and not METRICS_PUBLIC:
    raise ImproperlyConfigured(
        "DEBUG is off, so METRICS_TOKEN must be set (Prometheus then sends it as "
        "'Authorization: Bearer <token>'); make one with "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'. "
        "To serve /metrics without a token on purpose, set METRICS_PUBLIC=true instead."
    )

INSTALLED_APPS = [
    "django_prometheus",
    "opsportal.admin_site.PortalAdminConfig",  # django.contrib.admin with the portal's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "axes",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "csp",
    "opsportal",
    "opsportal.accounts",
    "opsportal.audit",
    "opsportal.systems",
    "opsportal.people",
    "opsportal.health",
    "opsportal.operations",
    "opsportal.approvals",
    "opsportal.monitoring",
    "opsportal.statuspage",
    "opsportal.api",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "incidents",
    "backups",
    "maintenance",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "opsportal.accounts.middleware.SessionLifetimeMiddleware",
    "opsportal.accounts.middleware.TwoFactorRequiredMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
    "opsportal.audit.middleware.AuditContextMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "opsportal.urls"
LOGIN_URL = "admin:login"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "opsportal" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "csp.context_processors.nonce",
            ],
        },
    },
]

WSGI_APPLICATION = "opsportal.wsgi.application"
ASGI_APPLICATION = "opsportal.asgi.application"

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'opsportal.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server, the worker and beat read while one of them writes.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "django_prometheus.db.backends.postgresql"
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://opsportal")}
# The same backends, counted in /metrics (django-prometheus's django_cache_* figures).
_COUNTED_CACHES = {
    "django.core.cache.backends.redis.RedisCache": "opsportal.health.cache_backends.RedisCache",
    "django.core.cache.backends.locmem.LocMemCache": (
        "django_prometheus.cache.backends.locmem.LocMemCache"
    ),
    "django.core.cache.backends.filebased.FileBasedCache": (
        "django_prometheus.cache.backends.filebased.FileBasedCache"
    ),
}
CACHES["default"]["BACKEND"] = _COUNTED_CACHES.get(
    CACHES["default"]["BACKEND"], CACHES["default"]["BACKEND"]
)

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Repeated failed logins: lock the username+address pair after AXES_FAILURE_LIMIT tries.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("AXES_COOLOFF_HOURS", default=0.25)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# The client's address behind reverse proxies, one answer for lockouts and audit records
# (opsportal.audit.middleware.client_address, django-ipware underneath): TRUSTED_PROXY_COUNT
# proxies append to X-Forwarded-For; 0 ignores the header (any client can forge it). When
# TRUSTED_PROXIES lists the proxies' addresses (IPs or CIDRs), a request arriving from any
# other address has its header ignored too.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
TRUSTED_PROXIES = env.list("TRUSTED_PROXIES", default=[])
AXES_CLIENT_IP_CALLABLE = "opsportal.audit.middleware.client_address"
# Keys the audit history's hash chain and signs its checkpoints (HMAC-SHA256). It lives here,
# not in the database, so whoever can write the database cannot re-forge the chain. Never
# change it: records and checkpoints made with another key no longer verify.
_DEV_AUDIT_HMAC_KEY = "insecure-development-audit-key-only-valid-with-DEBUG"
AUDIT_HMAC_KEY = env.str("AUDIT_HMAC_KEY", default=_DEV_AUDIT_HMAC_KEY if DEBUG else "")
if not DEBUG and (len(AUDIT_HMAC_KEY) < 32 or AUDIT_HMAC_KEY == _DEV_AUDIT_HMAC_KEY):
    raise ImproperlyConfigured(
        "DEBUG is off, so AUDIT_HMAC_KEY must be set to a random value of at least 32 "
        "characters (e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Production serves collected, fingerprinted files; development and tests serve from the apps.
STATIC_MANIFEST = env.bool("STATIC_MANIFEST", default=not DEBUG)
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=not STATIC_MANIFEST)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if STATIC_MANIFEST
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Production hardening; the defaults follow DEBUG so `check --deploy` is clean in production.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^health$", r"^health/detailed$", r"^metrics$"]
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("BEHIND_TLS_PROXY", default=False) else None
)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Sessions, Content-Security-Policy, two-factor sign-in (issue 9) ------------------------
# A signed-in browser left open is signed out after SESSION_IDLE_MINUTES without a request,
# and every session ends SESSION_MAX_AGE_HOURS after sign-in whatever its activity
# (opsportal.accounts.middleware.SessionLifetimeMiddleware keeps both timestamps in it).
SESSION_IDLE_TIMEOUT_SECONDS = round(env.float("SESSION_IDLE_MINUTES", default=30.0) * 60)
SESSION_ABSOLUTE_TIMEOUT_SECONDS = round(env.float("SESSION_MAX_AGE_HOURS", default=12.0) * 3600)
# The cookie and the stored session never outlive the absolute lifetime either.
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT_SECONDS
SESSION_COOKIE_HTTPONLY = True

# Only the portal's own files run: scripts and styles from 'self' (or a <script>/<style>
# carrying the per-response nonce); no inline event handlers or style attributes, no
# framing, no plugins, forms post only back to the portal.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF, NONCE],
        "style-src": [SELF, NONCE],
        "img-src": [SELF],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    },
}

# Two-factor sign-in (TOTP apps plus one-time backup codes, django-otp). Required for every
# user who signs in unless relaxed; `make run` (DEBUG=true) relaxes it by default so the
# try-out stays one password. A user who has set up a device is always asked for a code.
OPSPORTAL_REQUIRE_2FA = env.bool("OPSPORTAL_REQUIRE_2FA", default=not DEBUG)
OTP_TOTP_ISSUER = env.str("OTP_TOTP_ISSUER", default="OpsPortal")

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.filebased.EmailBackend",
)
EMAIL_FILE_PATH = str(VAR_DIR / "mail")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="opsportal@localhost")
NOTIFICATION_WEBHOOK_TIMEOUT = env.float("NOTIFICATION_WEBHOOK_TIMEOUT", default=5.0)
NOTIFICATION_MAX_ATTEMPTS = env.int("NOTIFICATION_MAX_ATTEMPTS", default=5)
# The portal's address as people reach it, for links in pages ("Acknowledge", "Open the
# incident"); messages leave the request that could tell it.
PORTAL_URL = env.str("PORTAL_URL", default="http://localhost:8000").rstrip("/")
# How long an "Acknowledge" link in a page works (it works once).
ACKNOWLEDGE_LINK_MINUTES = env.int("ACKNOWLEDGE_LINK_MINUTES", default=60)

# The public status page (/status/, opsportal/statuspage/).
STATUS_PAGE_LOGIN_REQUIRED = env.bool("STATUS_PAGE_LOGIN_REQUIRED", default=False)
# Where the links in subscribers' emails point (the portal as its users reach it).
STATUS_PAGE_BASE_URL = env.str("STATUS_PAGE_BASE_URL", default="http://127.0.0.1:8000")
STATUS_PAGE_MAX_AGE_SECONDS = env.int("STATUS_PAGE_MAX_AGE_SECONDS", default=15)
# Subscribe requests allowed per address and per client address within the window.
STATUS_PAGE_SUBSCRIBE_PER_ADDRESS = env.int("STATUS_PAGE_SUBSCRIBE_PER_ADDRESS", default=3)
STATUS_PAGE_SUBSCRIBE_PER_CLIENT = env.int("STATUS_PAGE_SUBSCRIBE_PER_CLIENT", default=10)
STATUS_PAGE_SUBSCRIBE_WINDOW_SECONDS = env.int("STATUS_PAGE_SUBSCRIBE_WINDOW_SECONDS", default=3600)
# Throwaway mail services (and their subdomains) that may not subscribe.
STATUS_PAGE_BLOCKED_EMAIL_DOMAINS = env.list(
    "STATUS_PAGE_BLOCKED_EMAIL_DOMAINS",
    default=[
        "mailinator.com",
        "guerrillamail.com",
        "10minutemail.com",
        "temp-mail.org",
        "yopmail.com",
        "trashmail.com",
        "sharklasers.com",
        "dispostable.com",
        "getnada.com",
        "maildrop.cc",
    ],
)

# Celery: the broker needs no server by default: files under var/, through kombu's
# filesystem transport with atomic writes and claims (opsportal/embedded_broker.py; kombu's
# own can hand a consumer a half-written message and crash the worker).
_BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "opsportal.embedded_broker:Transport"
    for sub in ("queue", "processed", "control", "staging", "claimed", "rejected"):
        (_BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "staging_folder": str(_BROKER_DIR / "staging"),
        "claimed_folder": str(_BROKER_DIR / "claimed"),
        "rejected_folder": str(_BROKER_DIR / "rejected"),
        "store_processed": False,
        # A worker whose prefetch is full sleeps one interval before it takes the next
        # message, so this bounds its rate: at 0.2 s, 10 short tasks a second. An idle
        # poll costs a listdir of a near-empty directory.
        "polling_interval": 0.02,
    }
# Four queues, so a long backup never delays collection or an operation: workers can be
# started per queue (`celery -A opsportal worker -Q collect`, see deploy/Procfile); a worker
# started without -Q consumes all four, as `make run` and the tests do.
WORKER_QUEUES = ("default", "collect", "operations", "backups")
CELERY_TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in WORKER_QUEUES)
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_TASK_ROUTES = {
    "monitoring.collect": {"queue": "collect"},
    "monitoring.collect_systems": {"queue": "collect"},
    "systems.check_due": {"queue": "collect"},
    "operations.execute": {"queue": "operations"},
    "maintenance.run_step": {"queue": "operations"},
    "backups.run": {"queue": "backups"},
    "backups.run_scheduled": {"queue": "backups"},
    "backups.restore": {"queue": "backups"},
    "backups.drill": {"queue": "backups"},
    "backups.configuration_backup": {"queue": "backups"},
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("CELERY_BROKER_CONNECTION_TIMEOUT", default=3.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Health and metrics
HEALTH_TOKEN = env.str("HEALTH_TOKEN", default="")
# METRICS_TOKEN and METRICS_PUBLIC are read with the production refusals near the top.
# Alertmanager sends it as "Authorization: Bearer <token>"; empty turns the webhook off.
ALERTMANAGER_WEBHOOK_TOKEN = env.str("ALERTMANAGER_WEBHOOK_TOKEN", default="")
# A group of a thousand alerts is a few hundred kilobytes; a bigger body is refused (413).
ALERTMANAGER_WEBHOOK_MAX_BYTES = env.int("ALERTMANAGER_WEBHOOK_MAX_BYTES", default=1_048_576)
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=2.0)
HEALTH_CRITICAL_CHECKS = env.list(
    "HEALTH_CRITICAL_CHECKS", default=["database", "broker", "workers", "disk", "systems"]
)
HEALTH_DISK_MIN_FREE_PERCENT = env.float("HEALTH_DISK_MIN_FREE_PERCENT", default=10.0)
HEALTH_MEMORY_MAX_USED_PERCENT = env.float("HEALTH_MEMORY_MAX_USED_PERCENT", default=90.0)
HEALTH_BEAT_MAX_AGE_SECONDS = env.int("HEALTH_BEAT_MAX_AGE_SECONDS", default=120)
BACKUP_ROOT = Path(env.str("BACKUP_ROOT", default=str(VAR_DIR / "backups")))
# Backups: a database whose newest good backup is older than this fails /health/detailed;
# the configuration (systems, people, schedules, plans) is committed to this Git repository
# and pushed to the remote when one is set.
BACKUP_MAX_AGE_HOURS = env.float("BACKUP_MAX_AGE_HOURS", default=26.0)
CONFIG_BACKUP_REPO = Path(env.str("CONFIG_BACKUP_REPO", default=str(VAR_DIR / "config-repo")))
CONFIG_BACKUP_REMOTE = env.str("CONFIG_BACKUP_REMOTE", default="")
CONFIG_BACKUP_ON_CHANGE = env.bool("CONFIG_BACKUP_ON_CHANGE", default=True)
CONFIG_BACKUP_DEBOUNCE_SECONDS = env.float("CONFIG_BACKUP_DEBOUNCE_SECONDS", default=30.0)
# A running backup beats every BACKUP_HEARTBEAT_SECONDS; one silent for the stale window lost
# its worker: it is failed, the DBAs are told, and a scheduled one is re-run once.
BACKUP_HEARTBEAT_SECONDS = env.float("BACKUP_HEARTBEAT_SECONDS", default=5.0)
BACKUP_HEARTBEAT_STALE_SECONDS = env.float("BACKUP_HEARTBEAT_STALE_SECONDS", default=30.0)
PROMETHEUS_EXPORT_MIGRATIONS = False

# Monitoring: how often each system is sampled (editable per system), the rolling window
# for API p95 and error rate, and how long raw samples are kept before downsampling.
MONITORING_DEFAULT_INTERVAL_SECONDS = env.int("MONITORING_DEFAULT_INTERVAL_SECONDS", default=30)
MONITORING_WINDOW_SECONDS = env.int("MONITORING_WINDOW_SECONDS", default=300)
MONITORING_RAW_RETENTION_DAYS = env.int("MONITORING_RAW_RETENTION_DAYS", default=7)
MONITORING_ROLLUP_RETENTION_DAYS = env.int("MONITORING_ROLLUP_RETENTION_DAYS", default=90)
MONITORING_LONG_QUERY_SECONDS = env.float("MONITORING_LONG_QUERY_SECONDS", default=60.0)
# A Docker engine on the worker's own host (unix://): its containers' CPU and memory from the
# kernel's cgroup files, without waiting up to a second for the engine's stats tick (false:
# always ask the engine's stats API).
MONITORING_DOCKER_KERNEL_FIGURES = env.bool("MONITORING_DOCKER_KERNEL_FIGURES", default=True)
# A series not updated for this long (or three of its system's intervals, if longer) is
# dropped from the newest-value table that /metrics and the overview read: a removed
# container, an unmounted filesystem, a figure the system no longer reports.
MONITORING_STALE_SERIES_SECONDS = env.int("MONITORING_STALE_SERIES_SECONDS", default=900)

# --- REST API (issue 12) -------------------------------------------------------------------
# Personal API tokens only (opsportal/api); each token may make API_TOKEN_RATE requests
# (DRF's "<n>/<second|minute|hour|day>") before it is answered 429 with Retry-After.
API_TOKEN_RATE = env.str("API_TOKEN_RATE", default="1200/minute")
# The audit export streams at most this many records a response, then names the next part
# in a `Link: <...>; rel="next"` header: a response must end before gunicorn's worker
# timeout (WEB_TIMEOUT) ends it mid-stream. bench/audit_export.py measures the rate.
API_AUDIT_EXPORT_PART_ROWS = env.int("API_AUDIT_EXPORT_PART_ROWS", default=200_000)
# ... and looks at most this many consecutive record ids (a filter few records match must
# not scan the whole table in one response).
API_AUDIT_EXPORT_PART_IDS = env.int("API_AUDIT_EXPORT_PART_IDS", default=1_000_000)
# The audit log's CSV download (admin) cannot come in parts: more records than this are
# refused with a message, before the download starts (bench/audit_export.py: the rate).
AUDIT_CSV_EXPORT_MAX_ROWS = env.int("AUDIT_CSV_EXPORT_MAX_ROWS", default=500_000)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["opsportal.api.authentication.ApiTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "opsportal.api.permissions.TokenScopePermission",
        "opsportal.api.permissions.RolePermission",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["opsportal.api.throttling.TokenRateThrottle"],
    "DEFAULT_PAGINATION_CLASS": "opsportal.api.pagination.ApiCursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "opsportal.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "UNAUTHENTICATED_TOKEN": None,
    # The format comes from the Accept header only, not a ?format= parameter.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "OpsPortal API",
    "DESCRIPTION": "Incidents, alerts, systems, operations, backups, maintenance windows and "
    "the audit history, on the same services and permissions as the admin. Authenticate with "
    "a personal API token: 'Authorization: Bearer ops_…' (create one in the admin).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "opsportal.api.schema.add_error_responses",
    ],
    # Several models have a "status" or "source": each its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "IncidentStatusEnum": "incidents.models.Status",
        "IncidentSourceEnum": "incidents.models.Source",
        "AlertStatusEnum": "incidents.models.AlertStatus",
        "OperationStatusEnum": "opsportal.operations.models.OperationStatus",
        # Backups and drills share one set of states.
        "BackupStatusEnum": "backups.models.BackupStatus",
        "WindowStatusEnum": "maintenance.models.WindowStatus",
        "AuditSourceEnum": "opsportal.audit.models.AuditSource",
    },
}

# Request bodies, set on purpose (issue #17): the biggest admin form (a runbook with its
# steps, a plan with its systems) is a few hundred fields and well under a megabyte; more is
# refused with a 400 before any form sees it. The Alertmanager webhook has its own limit.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env.int("DATA_UPLOAD_MAX_NUMBER_FIELDS", default=2000)
# A maintenance window may be started at most this long before its planned start; earlier
# is refused with the reason (start it closer to its time, or move the window).
MAINTENANCE_EARLY_START_MINUTES = env.int("MAINTENANCE_EARLY_START_MINUTES", default=240)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"axes": {"level": "WARNING"}},
}
