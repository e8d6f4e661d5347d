"""The lab's simulated nodes: their file trees, the sshd ForceCommand wrapper, the
simulated node tools and the simulated package repository.

Owns what runs "on" a lab node: ``tree`` builds each node's files under
``DIR/nodes/NAME/root``; ``wrapper`` writes the shell scripts sshd's ForceCommand runs
(picking the node from the dialled address and giving the command a private view of the
node's files); ``__main__`` is the entry point of every simulated tool (``kubeadm``,
``apt-get``, ``systemctl``, ...), dispatching on the tool name to ``kubeadm``, ``rpm``,
``services``, ``net`` and ``realtool`` (the machine's real apt, dpkg and gpg on Debian
nodes, after the node's faults); ``repo`` is the package versions the repositories hold.

Must not: import upgrader's production code beyond ``upgrader_lab.node`` itself (the
simulator must not share logic with what it tests), import heavy libraries in the tool
path (each tool invocation is a fresh Python process), or touch files outside the lab
directory and the node's private view.
"""
