"""The real systems of the platform that the portal watches and operates on."""

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.urls import reverse

from opsportal.systems.fields import EncryptedTextField

# Fields the periodic connection check writes; not configuration, so not audited as changes.
CHECK_STATE_FIELDS = [
    "last_checked_at",
    "last_check_ok",
    "last_check_message",
    "last_check_duration_ms",
    "updated_at",
]


class SystemKind(models.TextChoices):
    DOCKER = "docker", "Docker engine"
    POSTGRES = "postgres", "PostgreSQL database"
    REDIS = "redis", "Redis cache"
    HTTP = "http", "HTTP endpoint"


class System(models.Model):
    """What every registered system has; the kind-specific details live in the subclasses."""

    name = models.SlugField(
        max_length=80, unique=True, help_text="Short unique name, used in alerts and metric labels."
    )
    kind = models.CharField(max_length=16, choices=SystemKind.choices, editable=False)
    description = models.CharField(max_length=255, blank=True)
    critical = models.BooleanField(
        default=True,
        help_text="A failing check of a critical system makes /health/detailed answer 503.",
    )
    docker_engine = models.ForeignKey(
        "systems.DockerEngine",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="hosted_systems",
        help_text="The Docker engine this system runs on, if it runs in a container.",
    )
    container_name = models.CharField(
        max_length=128,
        blank=True,
        help_text="Its container's name on that engine (for logs, restarts, docker exec).",
    )
    check_interval_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(5), MaxValueValidator(86400)]
    )
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_ok = models.BooleanField(null=True, editable=False)
    last_check_message = models.CharField(max_length=500, blank=True, editable=False)
    last_check_duration_ms = models.FloatField(null=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    SECRET_FIELDS: tuple[str, ...] = ()

    class Meta:
        ordering = ["name"]
        permissions = [("test_connection", "Can test the connection to a system")]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(container_name="") | models.Q(docker_engine__isnull=True),
                name="system_container_named_when_engine_set",
                violation_error_message="Name the container when you choose a Docker engine.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def specific(self) -> "System":
        """The subclass instance (DockerEngine, PostgresDatabase, …) behind this row."""
        if type(self) is not System:
            return self
        return getattr(self, _SUBCLASS_ACCESSOR[self.kind])

    def get_admin_url(self) -> str:
        model = _SUBCLASS_ACCESSOR[self.kind]
        return reverse(f"admin:systems_{model}_change", args=[self.pk])

    @property
    def runs_in_container(self) -> bool:
        return self.docker_engine_id is not None and bool(self.container_name)


class DockerEngine(System):
    base_url = models.CharField(
        max_length=255,
        help_text="unix:///var/run/docker.sock, tcp://host:2376 (with TLS) or ssh://user@host",
    )
    tls_verify = models.BooleanField(
        default=True, help_text="For tcp://: verify the engine's certificate."
    )
    tls_ca_cert = models.TextField(blank=True, help_text="PEM of the CA that signed the engine.")
    tls_client_cert = models.TextField(blank=True, help_text="PEM client certificate.")
    tls_client_key = EncryptedTextField(blank=True, help_text="PEM client key (write-only).")
    timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.5)])

    SECRET_FIELDS = ("tls_client_key",)

    class Meta:
        verbose_name = "Docker engine"

    def save(self, *args, **kwargs):
        self.kind = SystemKind.DOCKER
        super().save(*args, **kwargs)


class PostgresDatabase(System):
    host = models.CharField(
        max_length=255,
        blank=True,
        help_text="Leave empty to connect to the container's own address on its engine.",
    )
    port = models.PositiveIntegerField(default=5432, validators=[MaxValueValidator(65535)])
    dbname = models.CharField("database name", max_length=63)
    username = models.CharField(max_length=63, default="postgres")
    password = EncryptedTextField(blank=True)
    sslmode = models.CharField(
        max_length=16,
        default="prefer",
        choices=[
            (m, m) for m in ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
        ],
    )
    connect_timeout_seconds = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1)]
    )
    # When the application holds every connection slot its user may have, the portal can no
    # longer connect as that user; operations then connect with this credential instead.
    operator_username = models.CharField(
        max_length=63,
        blank=True,
        help_text="A superuser (or, on PostgreSQL 16+, a role with pg_signal_backend and "
        "pg_use_reserved_connections) the portal's database operations connect as: it can use "
        "the reserved connection slots, so they still run when the application has used up "
        "every other one. Empty: operations run inside the database's container "
        "(docker exec … psql) if it has one, else as the user above.",
    )
    operator_password = EncryptedTextField(blank=True)

    SECRET_FIELDS = ("password", "operator_password")

    class Meta:
        verbose_name = "PostgreSQL database"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(operator_password="") | ~models.Q(operator_username=""),
                name="postgres_operator_password_has_username",
                violation_error_message="Name the operator user the operator password is for.",
            )
        ]

    def save(self, *args, **kwargs):
        self.kind = SystemKind.POSTGRES
        super().save(*args, **kwargs)


class RedisCache(System):
    host = models.CharField(max_length=255, default="127.0.0.1")
    port = models.PositiveIntegerField(default=6379, validators=[MaxValueValidator(65535)])
    db = models.PositiveSmallIntegerField("database number", default=0)
    username = models.CharField(max_length=128, blank=True)
    password = EncryptedTextField(blank=True)
    use_tls = models.BooleanField(default=False)
    timeout_seconds = models.FloatField(default=3.0, validators=[MinValueValidator(0.1)])

    SECRET_FIELDS = ("password",)

    class Meta:
        verbose_name = "Redis cache"

    def save(self, *args, **kwargs):
        self.kind = SystemKind.REDIS
        super().save(*args, **kwargs)


class HttpEndpoint(System):
    url = models.URLField(
        max_length=500, help_text="The API's health URL, e.g. https://api.example.com/health"
    )
    method = models.CharField(
        max_length=8, default="GET", choices=[("GET", "GET"), ("HEAD", "HEAD")]
    )
    expected_status = models.PositiveSmallIntegerField(default=200)
    timeout_seconds = models.FloatField(default=5.0, validators=[MinValueValidator(0.1)])
    verify_tls = models.BooleanField(default=True)
    authorization_header = EncryptedTextField(
        blank=True, help_text="Sent as the Authorization header (write-only), e.g. 'Bearer …'."
    )
    latency_target_ms = models.PositiveIntegerField(
        default=200, help_text="The runbook's P95 target for this API."
    )

    SECRET_FIELDS = ("authorization_header",)

    class Meta:
        verbose_name = "HTTP endpoint"

    def save(self, *args, **kwargs):
        self.kind = SystemKind.HTTP
        super().save(*args, **kwargs)


_SUBCLASS_ACCESSOR = {
    SystemKind.DOCKER: "dockerengine",
    SystemKind.POSTGRES: "postgresdatabase",
    SystemKind.REDIS: "rediscache",
    SystemKind.HTTP: "httpendpoint",
}

# select_related() these to turn System rows into their subclasses without extra queries.
SPECIFIC_RELATIONS = (*_SUBCLASS_ACCESSOR.values(), "docker_engine")
