# Turn off TX checksum offload on a device (SIOCETHTOOL / ETHTOOL_STXCSUM), for machines without ethtool.
# Usage: python3 txoff.py <dev>
import socket, fcntl, struct, ctypes, sys
dev = sys.argv[1]
ev = ctypes.create_string_buffer(struct.pack('II', 0x17, 0))  # ETHTOOL_STXCSUM, data=0
ifr = struct.pack('16sP', dev.encode(), ctypes.addressof(ev)) + b'\0' * 16
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
fcntl.ioctl(s.fileno(), 0x8946, ifr)  # SIOCETHTOOL
