"""``python -m careknot.servers amqtt PORT`` (see ``careknot.servers.mqtt_broker``)."""

import sys

from careknot.servers.mqtt_broker import main

sys.exit(main(sys.argv[1:]))
