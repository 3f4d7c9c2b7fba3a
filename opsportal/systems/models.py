"""The real systems of the platform that the portal watches and operates on."""

import os
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models.functions import Length
from django.urls import reverse

from opsportal.systems.fields import (
    EncryptedTextField,
    secret_field_names,
    secrets_entered,
    secrets_forget_entered,
)
from opsportal.validators import docker_engine_url

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
    # Fields that may change while the stored secrets stay: they decide neither where the
    # portal connects nor how it authenticates. Every other editable field is a
    # connection field (see `connection_fields`), so one added later is safe by default.
    SECRET_KEEPING_FIELDS: tuple[str, ...] = (
        "name",
        "description",
        "critical",
        "check_interval_seconds",
    )

    # Set by save(): the secrets it dropped and the connection fields whose change did.
    secrets_dropped: tuple[str, ...] = ()
    repointed_fields: tuple[str, ...] = ()

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

    def save(self, *args, **kwargs):
        # Someone who may edit a system but does not know its password must not be able
        # to point it at their own server and have the portal send the password there
        # (Test connection, the scheduled check). Enforced here so it holds for every
        # caller: the admin, a service, a shell.
        dropped = self._drop_secrets_if_repointed(kwargs.get("update_fields"))
        if dropped and kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], *dropped}
        super().save(*args, **kwargs)
        secrets_forget_entered(self)

    @classmethod
    def connection_fields(cls) -> list[models.Field]:
        """The fields that say where the portal connects and how: changing one re-points
        the system, and its stored secrets must not follow unless entered again."""
        secrets = set(secret_field_names(cls))
        return [
            f
            for f in cls._meta.concrete_fields
            if f.editable
            and not f.auto_created
            and not f.primary_key
            and f.name not in secrets
            and f.name not in cls.SECRET_KEEPING_FIELDS
        ]

    @classmethod
    def from_db(cls, db, field_names, values):
        system = super().from_db(db, field_names, values)
        secrets_forget_entered(system)  # loaded, not entered
        return system

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        entered = secrets_entered(self)
        super().refresh_from_db(using=using, fields=fields, from_queryset=from_queryset)
        refreshed = frozenset(fields) if fields is not None else entered
        secrets_forget_entered(self, refreshed)

    def changed_connection_fields(self, update_fields=None) -> tuple[str, ...]:
        """The connection fields this unsaved instance changes from the stored row."""
        if self.pk is None:
            return ()
        connection = [
            f
            for f in type(self).connection_fields()
            if f.attname in self.__dict__
            and (update_fields is None or {f.name, f.attname} & set(update_fields))
        ]
        if not connection:
            return ()
        stored = (
            type(self)._base_manager.filter(pk=self.pk).values(*[f.attname for f in connection])
        ).first()
        if stored is None:
            return ()
        return tuple(
            f.name for f in connection if _differs(f, stored[f.attname], getattr(self, f.attname))
        )

    def _drop_secrets_if_repointed(self, update_fields) -> tuple[str, ...]:
        self.secrets_dropped = self.repointed_fields = ()
        if self.pk is None:
            return ()
        secrets = [n for n in secret_field_names(type(self)) if n not in secrets_entered(self)]
        connection = [
            f
            for f in type(self).connection_fields()
            # A deferred field is not written by this save, so it cannot re-point.
            if f.attname in self.__dict__
            and (update_fields is None or {f.name, f.attname} & set(update_fields))
        ]
        if not secrets or not connection:
            return ()
        # Lengths of the stored ciphertexts: whether a deferred secret is held, without
        # decrypting anything.
        stored = (
            type(self)
            ._base_manager.filter(pk=self.pk)
            .values(
                *[f.attname for f in connection],
                **{f"_stored_{n}": Length(n) for n in secrets},
            )
            .first()
        )
        if stored is None:
            return ()
        changed = tuple(
            f.name for f in connection if _differs(f, stored[f.attname], getattr(self, f.attname))
        )
        held = tuple(
            n
            for n in secrets
            if (self.__dict__[n] if n in self.__dict__ else stored[f"_stored_{n}"])
        )
        if not changed or not held:
            return ()
        for name in held:
            self.__dict__[name] = ""  # not "entered": the secret is gone, not replaced
        self.secrets_dropped, self.repointed_fields = held, changed
        return held

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
        validators=[docker_engine_url],
        help_text="unix:///var/run/docker.sock, tcp://host:2376 (with TLS) or ssh://user@host",
    )
    tls_verify = models.BooleanField(
        default=True, help_text="For tcp://: verify the engine's certificate."
    )
    tls_ca_cert = models.TextField(blank=True, help_text="PEM of the CA that signed the engine.")
    tls_client_cert = models.TextField(blank=True, help_text="PEM client certificate.")
    tls_client_key = EncryptedTextField(
        blank=True, multiline=True, help_text="PEM client key (write-only)."
    )
    timeout_seconds = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.5), MaxValueValidator(300)],
        help_text="0.5 to 300 seconds.",
    )
    engine_id = models.CharField(
        "engine ID",
        max_length=128,
        blank=True,
        editable=False,
        db_index=True,
        help_text="The daemon's own ID (docker info), recorded at each connection check: two "
        "registrations with the same ID are one engine reached two ways.",
    )

    SECRET_FIELDS = ("tls_client_key",)
    # The client certificate is public; the key stays with the CA and base URL it was
    # entered for. Where the engine itself runs does not change how it is reached.
    SECRET_KEEPING_FIELDS = (
        *System.SECRET_KEEPING_FIELDS,
        "docker_engine",
        "container_name",
        "tls_client_cert",
        "timeout_seconds",
    )
    # Secrets of the systems that run on this engine, dropped by the last save because it
    # re-pointed the engine: {system name: (secret field names)}.
    dependents_secrets_dropped: dict[str, tuple[str, ...]] = {}

    class Meta:
        verbose_name = "Docker engine"

    def save(self, *args, **kwargs):
        # A database or cache in a container on this engine is reached through it (its
        # address, `docker exec … psql/pg_dump` with the password in the environment):
        # pointing the engine at another daemon must not take their secrets along either.
        self.kind = SystemKind.DOCKER
        repointed = self.changed_connection_fields(kwargs.get("update_fields"))
        super().save(*args, **kwargs)
        self.dependents_secrets_dropped = {}
        if not repointed:
            return
        for system in System.objects.filter(docker_engine_id=self.pk).exclude(pk=self.pk):
            dependent = system.specific()
            held = tuple(n for n in secret_field_names(type(dependent)) if getattr(dependent, n))
            if not held:
                continue
            for name in held:
                dependent.__dict__[name] = ""  # gone, not replaced
            dependent.save(update_fields=held)
            self.dependents_secrets_dropped[dependent.name] = held

    def clean(self) -> None:
        super().clean()
        # One engine registered twice watches every container twice: each fault would open
        # two incidents and page twice.
        address = engine_address(self.base_url)
        for other in DockerEngine.objects.exclude(pk=self.pk).only("name", "base_url"):
            if engine_address(other.base_url) == address:
                raise ValidationError(
                    {
                        "base_url": f"This Docker engine is already registered as {other.name!r} "
                        f"({other.base_url}); registering it twice would raise every "
                        "container's alerts twice. Use that registration."
                    }
                )

    @property
    def first_registration(self) -> "DockerEngine | None":
        """The engine registered earlier with the same daemon ID, when this is a second
        registration of one daemon (e.g. its socket and its ssh:// address)."""
        if not self.engine_id:
            return None
        return (
            DockerEngine.objects.filter(engine_id=self.engine_id, pk__lt=self.pk)
            .order_by("pk")
            .first()
        )


def engine_address(base_url: str) -> str:
    """The engine's address with the spelling differences taken out: the socket's real
    path (/var/run is /run), the host in lower case with its default port, no user."""
    url = base_url.strip()
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme == "unix" or (not rest and url.startswith("/")):
        path = rest if scheme == "unix" else url
        return "unix:" + os.path.realpath("/" + path.lstrip("/"))
    if not rest:
        return url.lower()
    if scheme in ("http", "https"):
        scheme = "tcp"
    try:
        parsed = urlsplit(f"{scheme}://{rest}")
    except ValueError:
        # Unreadable (refused by the field's validator); compared as typed.
        return url.lower()
    host = (parsed.hostname or "").lower()
    host = "127.0.0.1" if host in ("localhost", "::1") else host
    try:
        port = parsed.port
    except ValueError:
        port = None
    default = {"tcp": 2375, "ssh": 22}.get(scheme)
    return f"{scheme}:{host}:{port or default}"


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
    # The engine and container are connection fields here: without a host the portal
    # connects to the container's address.
    SECRET_KEEPING_FIELDS = (*System.SECRET_KEEPING_FIELDS, "connect_timeout_seconds")

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
    timeout_seconds = models.FloatField(
        default=3.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(300)],
        help_text="0.1 to 300 seconds.",
    )

    SECRET_FIELDS = ("password",)
    # AUTH is sent before SELECT, so the database number does not decide who gets it.
    SECRET_KEEPING_FIELDS = (
        *System.SECRET_KEEPING_FIELDS,
        "docker_engine",
        "container_name",
        "db",
        "timeout_seconds",
    )

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
    timeout_seconds = models.FloatField(
        default=5.0,
        validators=[MinValueValidator(0.1), MaxValueValidator(300)],
        help_text="0.1 to 300 seconds.",
    )
    verify_tls = models.BooleanField(default=True)
    authorization_header = EncryptedTextField(
        blank=True, help_text="Sent as the Authorization header (write-only), e.g. 'Bearer …'."
    )
    latency_target_ms = models.PositiveIntegerField(
        default=200, help_text="The runbook's P95 target for this API."
    )

    SECRET_FIELDS = ("authorization_header",)
    SECRET_KEEPING_FIELDS = (
        *System.SECRET_KEEPING_FIELDS,
        "docker_engine",
        "container_name",
        "method",
        "expected_status",
        "timeout_seconds",
        "latency_target_ms",
    )

    class Meta:
        verbose_name = "HTTP endpoint"

    def save(self, *args, **kwargs):
        self.kind = SystemKind.HTTP
        super().save(*args, **kwargs)


def _differs(field: models.Field, stored: object, value: object) -> bool:
    try:
        value = field.to_python(value)
    except ValidationError:
        return True  # not even a valid value: certainly not the stored one
    if isinstance(value, str) and isinstance(stored, str):
        # The admin strips what it is sent; a PEM certificate saved elsewhere with its
        # final newline is the same certificate.
        return value.strip() != stored.strip()
    return value != stored


_SUBCLASS_ACCESSOR = {
    SystemKind.DOCKER: "dockerengine",
    SystemKind.POSTGRES: "postgresdatabase",
    SystemKind.REDIS: "rediscache",
    SystemKind.HTTP: "httpendpoint",
}

# select_related() these to turn System rows into their subclasses without extra queries.
SPECIFIC_RELATIONS = (*_SUBCLASS_ACCESSOR.values(), "docker_engine")
