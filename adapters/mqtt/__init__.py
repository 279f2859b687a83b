"""MQTT 3.1.1 on the wire: packets written by hand (``wire``), PUBLISH packets read out of a byte
stream (``frames``, pure), and the aiomqtt client that reads ahead (``client``)."""
