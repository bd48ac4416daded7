"""The French of demo.protocol.commands' phrases, for the French docs.

Keyed by the English template, as gettext keys a catalogue by its English message: each rule of
`commands.RULES` keeps one phrase, and `describe(args, "fr")` looks its French up here (the
same format fields: `{id}` a task or group id, `{q}` a queue, `{ex}` an exchange, `{rk}` a
routing key, `{a[n]}` the n-th argument, `{key}` the key). tests/unit/test_protocol_commands.py
checks that every English template has its French and that nothing here is left over.
"""

from __future__ import annotations

from typing import Final

FR: Final[dict[str, str]] = {
    "begin transaction": "début de transaction",
    "commit transaction": "validation de la transaction",
    "abort transaction": "abandon de la transaction",
    "restore unacked messages (visibility timeout check)": (
        "remise en file des messages non acquittés (contrôle du visibility timeout)"
    ),
    "look for unacked messages past the visibility timeout": (
        "cherche les messages non acquittés au-delà du visibility timeout"
    ),
    "reserve message {a[3]} in unacked": "réserve le message {a[3]} dans unacked",
    "reserve message {a[2]} in unacked": "réserve le message {a[2]} dans unacked",
    "ack message {a[2]}": "acquitte le message {a[2]}",
    "reply to a control command": "répond à une commande de contrôle",
    "wait for replies to a control command": "attend les réponses à une commande de contrôle",
    "publish a task message to queue '{q}'": "publie un message de tâche dans la file '{q}'",
    "count messages waiting in queue '{q}'": "compte les messages en attente dans la file '{q}'",
    "store result of task {id} (expires in {a[2]} s)": (
        "stocke le résultat de la tâche {id} (expire dans {a[2]} s)"
    ),
    "store result of task {id}": "stocke le résultat de la tâche {id}",
    "announce result of task {id}": "annonce le résultat de la tâche {id}",
    "listen for result of task {id}": "écoute le résultat de la tâche {id}",
    "stop listening for result of task {id}": "cesse d'écouter le résultat de la tâche {id}",
    "read result of task {id}": "lit le résultat de la tâche {id}",
    "forget result of task {id}": "oublie le résultat de la tâche {id}",
    "store result of group {id}": "stocke le résultat du groupe {id}",
    "announce result of group {id}": "annonce le résultat du groupe {id}",
    "read result of group {id}": "lit le résultat du groupe {id}",
    "read chord state of group {id}": "lit l'état du chord du groupe {id}",
    "update chord state of group {id}": "met à jour l'état du chord du groupe {id}",
    "send batched task events": "envoie des événements de tâche groupés",
    "send worker heartbeat": "envoie le heartbeat du worker",
    "send event '{rk}'": "envoie l'événement '{rk}'",
    "listen for events matching '{rk}'": "écoute les événements qui correspondent à '{rk}'",
    "stop listening for events matching '{rk}'": (
        "cesse d'écouter les événements qui correspondent à '{rk}'"
    ),
    "listen for remote control commands": "écoute les commandes de contrôle à distance",
    "stop listening for remote control commands": (
        "cesse d'écouter les commandes de contrôle à distance"
    ),
    "broadcast a control command": "diffuse une commande de contrôle",
    "bind queue to exchange '{ex}'": "lie la file à l'exchange '{ex}'",
    "unbind queue from exchange '{ex}'": "délie la file de l'exchange '{ex}'",
    "pin binding to exchange '{ex}'": "épingle la liaison à l'exchange '{ex}'",
    "unpin binding to exchange '{ex}'": "désépingle la liaison à l'exchange '{ex}'",
    "bind queue to exchange '{ex}' (with deadline)": (
        "lie la file à l'exchange '{ex}' (avec échéance)"
    ),
    "sweep bindings past their deadline": "balaie les liaisons dont l'échéance est passée",
    "push back deadline of exchange '{a[4]}' bindings": (
        "repousse l'échéance des liaisons de l'exchange '{a[4]}'"
    ),
    "find bindings past their deadline": "cherche les liaisons dont l'échéance est passée",
    "load a Lua script into the server's cache": "charge un script Lua dans le cache du serveur",
    "check a Lua script is cached": "vérifie qu'un script Lua est en cache",
    "open the connection (protocol RESP{key})": "ouvre la connexion (protocole RESP{key})",
    "check the connection is alive": "vérifie que la connexion est vivante",
}

# BRPOP's phrase is built, not templated (commands._brpop): what it waits on, then its
# priority sub-queues, each for one queue and for several.
BRPOP_FR: Final[tuple[tuple[str, str], tuple[str, str]]] = (
    ("attend un message sur la file {listed}", "attend un message sur les files {listed}"),
    (" (et ses sous-files de priorité {p})", " (et leurs sous-files de priorité {p})"),
)
