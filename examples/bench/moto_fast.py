#!/usr/bin/env python3
"""moto's server with one fix for large fleets, for the benchmark only.

  python moto_fast.py -H 127.0.0.1 -p PORT      (the same arguments as moto_server)

moto 5.2.5 looks up the tags of one resource by scanning the tags of every
resource in the region (TaggedEC2Resource.get_tags calls describe_tags with a
resource-id filter). Every tag filter and every serialized snapshot pays that
scan, so DescribeSnapshots over n tagged snapshots costs O(n^2): about 4 s at
2,000 snapshots and tens of minutes at 30,000, and each CreateSnapshot gets
slower as the account fills up. This replaces the scan with a dictionary
lookup returning the same list (same keys, same order). Nothing else about
moto changes. `run.sh --stock-moto` runs moto_server unpatched instead.
"""

import sys

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix
from moto.server import main


def get_tags(self):
    resource_id = getattr(self, "id", None)
    if not resource_id:
        return []
    # .get, not [...]: TagBackend.tags is a defaultdict and must not grow.
    tags = self.ec2_backend.tags.get(resource_id)
    if not tags:
        return []
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in tags.items()
    ]


TaggedEC2Resource.get_tags = get_tags

if __name__ == "__main__":
    sys.exit(main())
