"""The lab's simulated nodes: their file trees, the sshd ForceCommand wrapper, the
simulated node tools and the simulated package repository.

Owns what runs "on" a lab node: ``tree`` builds each node's files under
``DIR/nodes/NAME/root``; ``wrapper`` writes the shell scripts sshd's ForceCommand runs
(picking the node from the dialled address and giving the command a private view of the
node's files); ``__main__`` is the entry point of every simulated tool (``kubeadm``,
``apt-get``, ``systemctl``, ...), dispatching on the tool name to ``kubeadm``, ``apt``,
``rpm`` and ``services``; ``repo`` is the package repository they install from.

Must not: import upgrader's production code beyond ``upgrader.lab.node`` itself (the
simulator must not share logic with what it tests), import heavy libraries in the tool
path (each tool invocation is a fresh Python process), or touch files outside the lab
directory and the node's private view.
"""
