"""What each Redis command of a trace proves, in English and French: the catalogue as data.

A rule is (role, commands, key pattern) → sentence. The key is the normalised one the docs
show (`celery-task-meta-<id>`, `celery\\x06\\x163`, `<id>.reply.celery.pidbox`…); the first
rule that matches wins, so specific rules come before general ones. The sentences say what the
row proves about Celery, not what the command does in general
(demo.protocol.commands.describe does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from demo import names
from demo.names import BEAT, CLIENT, POOL_CHILD, WORKER_MAIN
from envoi_mails.xray.hops import HOPS

ANY: Final = "*"


@dataclass(frozen=True)
class Rule:
    role: str  # a trace role, or ANY
    commands: frozenset[str]
    key: str  # a regex the normalised key must fully match
    en: str
    fr: str

    def matches(self, role: str, command: str, key: str) -> bool:
        return (
            self.role in (ANY, role)
            and command in self.commands
            and re.fullmatch(self.key, key) is not None
        )


def _r(role: str, commands: str, key: str, en: str, fr: str) -> Rule:
    return Rule(role, frozenset(commands.split()), key, en, fr)


_META = re.escape(names.RESULT_PREFIX) + "<id>"
_PRI = r"(?:\\x06\\x16\d)?"  # a priority sub-queue suffix, as the docs print it
_REPLY = r"<id>" + re.escape(names.REPLY_SUFFIX) + _PRI
_UNACKED, _INDEX = re.escape(names.UNACKED), re.escape(names.UNACKED_INDEX)
_ACK_KEYS = f"{_UNACKED}|{_INDEX}"
_MUTEX = re.escape(names.UNACKED_MUTEX)
_TASK_EVENTS = r"/\d+" + re.escape(names.TASK_MULTI_SUFFIX)
_HEARTBEAT = r"/\d+" + re.escape(names.HEARTBEAT_SUFFIX)
_EVENTS = r"/\d+" + re.escape(names.EVENTS_INFIX) + ".+"
_PIDBOX = r"/\d+" + re.escape(names.PIDBOX_SUFFIX)
_BINDING = re.escape(names.BINDING_PREFIX) + ".+"
_PINNED = re.escape(names.BINDING_PERMANENT_PREFIX) + ".+"
_DEADLINES = re.escape(names.BINDING_DEADLINES)

# The catalogue reads as a table: one rule, three lines. Keep the formatter off its layout.
# fmt: off
RULES: Final[tuple[Rule, ...]] = (
    # the task's own path: publish, take, reserve, ack, store, announce, read
    _r(CLIENT, "SUBSCRIBE", _META,
       "the caller listens for the result before it even publishes the task",
       "l'appelant écoute le résultat avant même de publier la tâche"),
    _r(CLIENT, "LPUSH RPUSH", r"(?!<id>).+",
       "the caller publishes: the JSON message waits in a Redis list, not in a worker",
       "l'appelant publie : le message JSON attend dans une liste Redis, pas dans un worker"),
    _r(BEAT, "LPUSH", r"(?!<id>).+",
       "beat publishes a due entry like any client: a message in a list, nothing more",
       "beat publie une entrée échue comme n'importe quel client : un message dans une liste, "
       "rien de plus"),
    _r(BEAT, "SUBSCRIBE UNSUBSCRIBE", _META,
       "apply_async in beat subscribes to the result too, and drops it at once",
       "apply_async dans beat s'abonne lui aussi au résultat, et le lâche aussitôt"),
    _r(POOL_CHILD, "LPUSH RPUSH", r"(?!<id>).+",
       "a task that sends a task: the pool child is a client of the broker too",
       "une tâche qui envoie une tâche : l'enfant du pool est lui aussi client du broker"),
    _r(WORKER_MAIN, "BRPOP", r"(?!<id>).+",
       "only the MainProcess takes messages off the queue, blocking 1 s at a time",
       "seul le MainProcess retire les messages de la file, en bloquant 1 s à la fois"),
    _r(WORKER_MAIN, "ZADD", _INDEX,
       "the MainProcess reserves the message: out of the list, not yet acknowledged",
       "le MainProcess réserve le message : sorti de la liste, pas encore acquitté"),
    _r(WORKER_MAIN, "HSET", _UNACKED,
       "… keeping a copy until the ack: put back at a warm shutdown, or by a sweep after "
       "the visibility timeout",
       "… en gardant une copie jusqu'à l'acquittement : remise en file à un arrêt à chaud, ou "
       "par un balayage passé le visibility timeout"),
    _r(WORKER_MAIN, "ZREM HDEL", _ACK_KEYS,
       "the MainProcess drops the reservation: an ack (by default as a child starts the "
       "task), or a requeue",
       "le MainProcess retire la réservation : un acquittement (par défaut dès qu'un enfant "
       "démarre la tâche), ou une remise en file"),
    _r(ANY, "ZREM HDEL", _ACK_KEYS,
       "the message is acked: its reservation in `unacked` is dropped",
       "le message est acquitté : sa réservation dans `unacked` est retirée"),
    _r(POOL_CHILD, "GET", _META,
       "the child reads the key first: it never overwrites a stored SUCCESS",
       "l'enfant lit d'abord la clé : il n'écrase jamais un SUCCESS déjà stocké"),
    _r(POOL_CHILD, "SETEX SET", _META,
       "the pool child itself writes the result, with its expiry (result_expires)",
       "l'enfant du pool écrit lui-même le résultat, avec son expiration (result_expires)"),
    _r(POOL_CHILD, "PUBLISH", _META,
       "the child announces the result on the channel the caller subscribed to",
       "l'enfant annonce le résultat sur le canal auquel l'appelant s'est abonné"),
    _r(WORKER_MAIN, "GET", _META,
       "the MainProcess reads the key: every store reads before it writes (a stored SUCCESS "
       "is never overwritten), and a revoke or a lost child checks the state",
       "le MainProcess lit la clé : chaque écriture lit avant d'écrire (un SUCCESS stocké "
       "n'est jamais écrasé), et une révocation ou un enfant perdu vérifie l'état"),
    _r(WORKER_MAIN, "SETEX SET", _META,
       "the MainProcess writes the result itself: a task it ran (threads, solo), REVOKED, "
       "a FAILURE its child could not store (lost, hard time limit), or RETRY for a lost "
       "child's task it sent again",
       "le MainProcess écrit lui-même le résultat : une tâche qu'il a exécutée (threads, "
       "solo), REVOKED, un FAILURE que son enfant n'a pu stocker (perdu, limite dure), ou "
       "RETRY pour la tâche d'un enfant perdu qu'il a renvoyée"),
    _r(WORKER_MAIN, "PUBLISH", _META,
       "… and announces it on the channel the caller subscribed to",
       "… et l'annonce sur le canal auquel l'appelant s'est abonné"),
    _r(WORKER_MAIN, "LPUSH RPUSH", r"(?!<id>).+",
       "the MainProcess pushes a message itself: one it had reserved, put back (a requeue, a "
       "warm shutdown, a sweep past the visibility timeout: marked redelivered), or the retry "
       "of a task whose child died (task_retry_on_worker_lost)",
       "le MainProcess pousse lui-même un message : un message qu'il avait réservé, remis en "
       "file (une remise en file, un arrêt à chaud, un balayage passé le visibility timeout : "
       "marqué redelivered), ou le retry d'une tâche dont l'enfant est mort "
       "(task_retry_on_worker_lost)"),
    _r(CLIENT, "GET MGET", _META,
       "`get()` reads the key once; otherwise it waits for the PUBLISH",
       "`get()` lit la clé une fois ; sinon il attend le PUBLISH"),
    _r(CLIENT, "UNSUBSCRIBE", _META,
       "the caller stops listening once it has the result",
       "l'appelant cesse d'écouter une fois le résultat reçu"),
    _r(ANY, "EXISTS TTL PTTL", _META,
       "the scenario looks at the result key itself",
       "le scénario examine lui-même la clé du résultat"),
    _r(ANY, "DEL", _META, "the result is forgotten", "le résultat est oublié"),
    # events, control, gossip
    _r(WORKER_MAIN, "PUBLISH", _TASK_EVENTS,
       "task events (-E, or enabled remotely), batched by the MainProcess, not sent by the child",
       "les événements de tâche (-E, ou activés à distance), groupés par le MainProcess, pas "
       "envoyés par l'enfant"),
    _r(ANY, "PUBLISH", _HEARTBEAT,
       "the worker says it is alive, every 2 s, with or without -E",
       "le worker signale qu'il est vivant, toutes les 2 s, avec ou sans -E"),
    _r(ANY, "PUBLISH", _EVENTS,
       "a worker event for monitors such as Flower",
       "un événement de worker pour les outils de suivi comme Flower"),
    _r(ANY, "PSUBSCRIBE", _EVENTS,
       "the worker listens to the other workers' events",
       "le worker écoute les événements des autres workers"),
    _r(ANY, "PSUBSCRIBE", _PIDBOX,
       "the MainProcess listens for remote control (inspect, control)",
       "le MainProcess écoute les commandes à distance (inspect, control)"),
    _r(ANY, "PUBLISH", _PIDBOX,
       "a control command broadcast to every worker (inspect, control, mingle)",
       "une commande de contrôle diffusée à tous les workers (inspect, control, mingle)"),
    _r(WORKER_MAIN, "LPUSH RPUSH", _REPLY,
       "the MainProcess answers on the asker's own reply list",
       "le MainProcess répond dans la liste de réponse du demandeur"),
    _r(ANY, "BRPOP LLEN DEL", _REPLY,
       "the asker waits for, or clears, its reply list",
       "le demandeur attend ou vide sa liste de réponses"),
    # routing tables (kombu), the unacked sweep
    _r(ANY, "SADD", _BINDING,
       "a queue is bound to its exchange: kombu's routing table",
       "une file est liée à son exchange : la table de routage de kombu"),
    _r(ANY, "SADD", _PINNED,
       "new in kombu 5.7: the binding is pinned, it never expires",
       "nouveau dans kombu 5.7 : la liaison est épinglée, elle n'expire jamais"),
    _r(ANY, "SREM", f"{_BINDING}|{_PINNED}",
       "a binding is removed", "une liaison est retirée"),
    _r(ANY, "EVAL EVALSHA", _BINDING,
       "a binding with a deadline (Lua script): it goes unless refreshed",
       "une liaison avec échéance (script Lua) : elle disparaît si elle n'est pas rafraîchie"),
    _r(ANY, "EVAL EVALSHA ZADD ZRANGEBYSCORE", _DEADLINES,
       "kombu 5.7 keeps and sweeps the deadlines of expiring bindings",
       "kombu 5.7 tient et balaie les échéances des liaisons qui expirent"),
    _r(ANY, "SMEMBERS", _BINDING,
       "routing: the table says which queues get the message",
       "routage : la table dit quelles files reçoivent le message"),
    _r(ANY, "LLEN", r".+",
       "the length of a queue: declared, or inspected",
       "la longueur d'une file : déclarée, ou inspectée"),
    _r(ANY, "SET GET DEL EVAL EVALSHA", _MUTEX,
       "a lock while messages reserved too long are put back in the queue",
       "un verrou pendant que les messages réservés trop longtemps sont remis en file"),
    _r(ANY, "ZRANGE", _INDEX,
       "look for messages reserved longer than the visibility timeout",
       "cherche les messages réservés depuis plus que le visibility timeout"),
    _r(ANY, "TIME", r".*",
       "kombu reads the server's clock for its binding deadlines",
       "kombu lit l'horloge du serveur pour ses échéances de liaisons"),
    _r(ANY, "SCRIPT", r".*",
       "kombu makes sure its Lua scripts are loaded",
       "kombu s'assure que ses scripts Lua sont chargés"),
    _r(ANY, "HLEN HMGET HGETALL HSCAN", _UNACKED,
       "the scenario looks at the reserved messages", "le scénario examine les messages réservés"),
)
# fmt: on

# The French of envoi_mails.xray.hops.HOPS meanings (the English is HOPS itself).
HOPS_FR: Final[dict[str, str]] = {
    "result.subscribe": "le backend s'abonne à celery-task-meta-<id> (avant la publication)",
    "task.publishing": (
        "le message est construit, juste avant le LPUSH (send_task_message, où part "
        "before_task_publish)"
    ),
    "task.published": (
        "le message est dans le broker (send_task_message, où part after_task_publish)"
    ),
    "result.wait": "result.get() commence à attendre sur le canal pub/sub",
    "result.message": "le résultat est arrivé par le canal pub/sub (ou par GET)",
    "result.fetched": "result.get() a rendu la main",
    "worker.init": "worker_init : le MainProcess démarre, avant de forker le pool",
    "worker.ready": "worker_ready : pool forké, consommation lancée",
    "worker.heartbeat": (
        "heartbeat_sent : un événement worker-heartbeat est parti (avec ou sans -E)"
    ),
    "worker.shutdown": "worker_shutdown : le MainProcess s'arrête",
    "task.received": (
        "le MainProcess a retiré le message de la file (sa Request, juste avant task_received)"
    ),
    "task.accepted": "un enfant du pool a envoyé ACK pour le job (child_pid dit lequel)",
    "task.acked": "le MainProcess a acquitté le message (ZREM/HDEL unacked)",
    "task.event": (
        "le MainProcess a envoyé un événement de tâche (task-started, …) : avec -E, ou une fois "
        "que Flower les a activés"
    ),
    "worker.process_init": "worker_process_init dans le MainProcess (--pool solo : aucun enfant)",
    "child.init": "worker_process_init : un enfant du pool tout juste forké",
    "child.shutdown": "worker_process_shutdown : un enfant du pool se termine",
    "task.prerun": (
        "l'enfant va exécuter le corps de la tâche (Task.before_start, juste après task_prerun)"
    ),
    "result.stored": "l'enfant a écrit celery-task-meta-<id> (SETEX + PUBLISH)",
    "task.success": (
        "la tâche a rendu sa valeur, stockée (Task.on_success, juste avant task_success)"
    ),
    "task.failure": "task_failure : la tâche a levé une exception",
    "task.retry": "task_retry : la tâche demande à être relancée",
    "task.postrun": (
        "l'enfant en a fini avec cet essai (Task.after_return ; pour un retry, après task_retry)"
    ),
    "beat.init": (
        "beat_init : `celery beat` lance sa boucle d'ordonnancement (il ne fait que publier)"
    ),
    "log": "une ligne de log de Celery ou kombu (logger, niveau, message)",
    "redis.command": (
        "une commande Redis, enregistrée par le processus qui l'envoie "
        "(MONITOR ajoute le reste comme unknown)"
    ),
    "redis.reply": "ce qu'une commande a renvoyé, quand cela nomme une tâche (le message du BRPOP)",
}

HEADERS: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "commands": {
        "en": ("sent by", "command", "what it proves"),
        "fr": ("envoyé par", "commande", "ce que ça prouve"),
    },
    "hops": {"en": ("process", "hop", "meaning"), "fr": ("processus", "hop", "sens")},
}


def annotate(role: str, command: str, key: str, lang: str) -> str | None:
    """The first matching rule's sentence in `lang`, or None when no rule knows the row."""
    for rule in RULES:
        if rule.matches(role, command.upper(), key):
            return rule.fr if lang == "fr" else rule.en
    return None


def hop_meaning(hop: str, lang: str) -> str:
    """What a hop means, from envoi_mails.xray.hops (English) or HOPS_FR; "" if unknown."""
    if lang == "fr" and hop in HOPS_FR:
        return HOPS_FR[hop]
    return HOPS[hop][1] if hop in HOPS else ""
