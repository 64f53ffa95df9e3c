"""Interchangeable keypoints: groups of keypoints whose labels carry no meaning.

A data set's `left_hand` and `right_hand` may not be tied to the image sides (one
annotator's left is another's right), and the corners of a symmetric part cannot be
told apart at all. Trained against such labels a heatmap model puts both hands on one
drawn hand and a regression model averages them. A config declares such groups
(`data.interchangeable: [[hand_left, hand_right]]`, by keypoint name or index); then

    training    takes each sample's loss under the best assignment within each group
                (`common.losses.InterchangeableLoss`: a min over the groups' permutations)
    evaluation  matches predictions to labels within each group the same way and reports
                the matched figures beside the raw ones (`common.metrics.match_groups`)
    decoding    keeps the keypoints of one group on distinct peaks
                (`GaussianHeatmapCodec.decode(groups=...)`)
    pose        tries the allowed assignments and keeps the best reprojection
                (`stage2_visible_keypoints.pose.solve_pnp_groups`)

This module turns the config's groups into keypoint indices and enumerates their
permutations (at build time, in numpy: the losses only gather with them).
"""

import itertools
import math

import numpy as np

from common.errors import DataError

# The loss is evaluated once per assignment: 6! = 720 of them is already far more than a
# training step should pay for, so larger products of groups are refused.
MAX_ASSIGNMENTS = 720


def check_groups(groups, field="data.interchangeable"):
    """The config value as a tuple of tuples (names as str, indices as int); ValueError
    naming `field` when a group has fewer than 2 members or an entry is not a name or index.
    Names are resolved later, against the data's keypoint names (`resolve_groups`)."""
    if groups is None:
        return ()
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__iter__"):
        raise ValueError(f"{field} must be a list of keypoint groups, e.g. [[hand_left, hand_right]]. "
                         f"Received: {groups!r}")
    checked = []
    for group in groups:
        if isinstance(group, (str, bytes)) or not hasattr(group, "__iter__"):
            raise ValueError(f"{field}: each group must be a list of keypoint names or indices. "
                             f"Received: {group!r}")
        members = []
        for member in group:
            if isinstance(member, bool) or not isinstance(member, (str, int)) or (
                    isinstance(member, int) and member < 0):
                raise ValueError(f"{field}: a member must be a keypoint name or an index >= 0. Received: {member!r}")
            members.append(member)
        if len(members) < 2:
            raise ValueError(f"{field}: a group needs at least 2 keypoints. Received: {list(group)!r}")
        checked.append(tuple(members))
    return tuple(checked)


def resolve_groups(groups, keypoint_names, source=None, field="data.interchangeable"):
    """Groups as tuples of keypoint indices into `keypoint_names`.

    Raises `DataError` (one line, naming `source` and `field`) for an unknown name, an
    index out of range, or a keypoint in two groups (or twice in one).
    """
    names = [str(n) for n in keypoint_names]
    resolved, seen = [], set()
    for group in check_groups(groups, field):
        indices = []
        for member in group:
            if isinstance(member, str):
                if member not in names:
                    raise DataError(f"{field}: no keypoint named {member!r} (keypoints: {', '.join(names)})", source)
                index = names.index(member)
            else:
                if member >= len(names):
                    raise DataError(f"{field}: keypoint index {member} is out of range (the data has "
                                    f"{len(names)} keypoints)", source)
                index = member
            if index in seen:
                raise DataError(f"{field}: keypoint {names[index]!r} is listed twice", source)
            seen.add(index)
            indices.append(index)
        resolved.append(tuple(indices))
    count = math.prod(math.factorial(len(g)) for g in resolved)
    if count > MAX_ASSIGNMENTS:
        raise DataError(f"{field}: the groups allow {count} assignments, more than {MAX_ASSIGNMENTS} "
                        f"(split them into smaller groups)", source)
    return tuple(resolved)


def group_permutations(groups, num_keypoints):
    """`(P, K)` int32 gather indices, one row per assignment (the product of every group's
    permutations; row 0 is the identity): `labels[:, perm]` relabels the keypoints.

    groups: tuples of keypoint indices (`resolve_groups`); () gives the identity only.
    """
    rows = [np.arange(num_keypoints)]
    for group in groups:
        if max(group) >= num_keypoints:
            raise ValueError(f"group {group} names a keypoint >= num_keypoints={num_keypoints}")
        extended = []
        for row in rows:
            for perm in itertools.permutations(group):
                new = row.copy()
                new[list(group)] = row[list(perm)]
                extended.append(new)
        rows = extended
    return np.stack(rows).astype(np.int32)


def group_names(groups, keypoint_names):
    """Groups of indices as lists of names, for summaries."""
    return [[str(keypoint_names[i]) for i in group] for group in groups]
