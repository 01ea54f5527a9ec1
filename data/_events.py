"""Repeatable behaviour events detected from Craftax state transitions.

Achievement flags only record the first occurrence in an episode; the trainer needs
every occurrence (blocks placed and mined by type, items crafted, eating, drinking,
sleeping, mobs hit and killed). :func:`event_spec` gives, per environment, the fixed
event order and a pure-``jnp`` :meth:`EventSpec.count` that turns one transition
``(prev_state, action, next_state)`` into an ``int32[len(events)]`` count vector.

Every detector reads only a handful of scalars and the one map cell the player faces,
so the count is cheap enough to run on every env step (the trainer vmaps it).

How each kind of event is seen (``action`` is the action the env actually ran: a
sleeping or resting player's action is replaced by NOOP, as Craftax does):

- placements and crafts: the action asked for it and the resource it consumes went
  down (nothing else spends inventory on those actions; caps never hide a decrease);
- mined blocks (wood, stone, coal, iron, diamond, ...): DO, and the faced cell changed
  from that block type (mining rewrites the cell; seen even when the inventory is full);
- drinking water, eating a ripe plant, hitting a mob: DO on that target, decided by the
  same rule Craftax applies (a mob in the faced cell takes the hit instead of the
  block; damage from the weapon held; a hit that leaves the mob with health <= 0 is a
  kill, any other hit an ``attack_*``);
- saplings: DO on grass and the sapling count went up (the draw is random, so this is
  the only evidence; a sapling collected at the inventory cap, 9 in Classic and 99 in full Craftax, is not seen);
- sleep: ``is_sleeping`` false -> true; ``wake_up``: true -> false (for any reason:
  rested, or woken by an attack); full Craftax adds ``rest`` (``is_resting`` false -> true);
- full Craftax only: ``attack_/kill_{melee,ranged}``, ``attack_passive``/``eat_passive``
  count melee blows on every mob type of a class, while ``*_zombie``, ``*_skeleton`` and
  ``*_cow`` keep their Classic meaning (type 0 of the class); ``kill_by_projectile`` is
  the monsters killed by the player's arrows and spells (Craftax's own per-floor kill
  tally minus the melee kills); ``fire_bow``, ``cast_*``, ``drink_potion``, ``read_book``,
  ``enchant_*``, ``level_up`` are the action plus the arrow/mana/potion/book/xp it
  spends; ``descend``/``ascend`` are floor changes.

Where an event has an achievement (:attr:`EventSpec.event_achievement`), the
achievement is set exactly at the event's first occurrence in an episode, except:
an arrow that wakes a sleeper counts ``wake_up`` but Craftax grants no achievement;
full Craftax also unlocks ``collect_*``/``make_*`` from the inventory (chest loot, or
a higher tool tier crafted first also sets the lower tier's achievement) and
``defeat_zombie``/``defeat_skeleton`` from projectile kills.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

import jax
import jax.numpy as jnp

from valuedyn.data._envs import ENV_NAMES, check_env_name

_CLASSIC, _FULL = ENV_NAMES


@dataclass(frozen=True)
class EventSpec:
    """Names and the per-transition counter of the repeatable events of one environment.

    ``achievements`` and ``actions`` are the lowercase Craftax enum names in enum order.
    ``event_achievement`` maps an event to the achievement unlocked by its first
    occurrence in an episode, where one exists.
    """

    env_name: str
    achievements: tuple[str, ...]
    actions: tuple[str, ...]
    events: tuple[str, ...]
    placement_events: tuple[str, ...]
    event_achievement: dict[str, str]

    def __hash__(self) -> int:  # the dict field would make the generated hash fail
        return hash((self.env_name, self.events))

    def count(self, prev_state, action, next_state) -> jax.Array:
        """Occurrences of each event in one unbatched env transition.

        ``next_state`` is what ``env.step_env`` returned for ``(prev_state, action)``,
        before any auto-reset. Returns ``int32[len(self.events)]`` in ``self.events``
        order. Pure ``jnp``: safe under ``jit`` and ``vmap``.
        """
        counts = _COUNTERS[self.env_name](prev_state, jnp.asarray(action, jnp.int32), next_state)
        return jnp.stack([jnp.asarray(counts[name], jnp.int32) for name in self.events])


def event_spec(env_name: str) -> EventSpec:
    """The :class:`EventSpec` of ``env_name`` (one of :data:`ENV_NAMES`)."""
    check_env_name(env_name)
    constants_module, events, placements, event_achievement = _TABLES[env_name]
    constants = import_module(constants_module)
    achievements = _enum_names(constants.Achievement)
    return EventSpec(
        env_name=env_name,
        achievements=achievements,
        actions=_enum_names(constants.Action),
        events=events,
        placement_events=placements,
        event_achievement=_checked(event_achievement, events, achievements),
    )


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _enum_names(enum) -> tuple[str, ...]:
    """Lowercase member names indexed by value (Craftax arrays are indexed by enum value)."""
    members = sorted(enum, key=lambda m: m.value)
    if [m.value for m in members] != list(range(len(members))):
        raise AssertionError(f"{enum.__name__} values are not 0..{len(members) - 1}; names cannot be indexed by value")
    return tuple(m.name.lower() for m in members)


def _facing(state, directions):
    """The cell the player faces, whether it lies on the map, and that cell clipped onto it."""
    target = jnp.asarray(state.player_position, jnp.int32) + directions[jnp.asarray(state.player_direction, jnp.int32)]
    shape = jnp.array(state.map.shape[-2:], jnp.int32)
    on_map = jnp.all((target >= 0) & (target < shape))
    return target, on_map, jnp.clip(target, 0, shape - 1)


def _hit(mobs, target, damage):
    """Player hit on one Classic mob array: (any slot hit, that hit was lethal)."""
    in_target = jnp.all(mobs.position == target, axis=-1) & mobs.mask
    lethal = in_target & (mobs.health - damage <= 0)
    return jnp.any(in_target), jnp.any(lethal)


def _decreased(prev_value, next_value):
    return jnp.asarray(next_value) < jnp.asarray(prev_value)


# ---------------------------------------------------------------------------
# Craftax-Classic
# ---------------------------------------------------------------------------

_CLASSIC_EVENTS = (
    "place_plant",
    "place_table",
    "place_stone",
    "place_furnace",
    "collect_wood",
    "collect_stone",
    "collect_coal",
    "collect_iron",
    "collect_diamond",
    "collect_sapling",
    "collect_drink",
    "make_wood_pickaxe",
    "make_stone_pickaxe",
    "make_iron_pickaxe",
    "make_wood_sword",
    "make_stone_sword",
    "make_iron_sword",
    "eat_cow",
    "eat_plant",
    "sleep",
    "wake_up",
    "attack_zombie",
    "kill_zombie",
    "attack_skeleton",
    "kill_skeleton",
    "attack_cow",
)
_CLASSIC_PLACEMENTS = ("place_plant", "place_table", "place_stone", "place_furnace")
_CLASSIC_EVENT_ACHIEVEMENT = {
    **{name: name for name in _CLASSIC_EVENTS if name.startswith(("place_", "collect_", "make_", "eat_"))},
    "wake_up": "wake_up",
    "kill_zombie": "defeat_zombie",
    "kill_skeleton": "defeat_skeleton",
}


def _count_classic(prev, action, nxt) -> dict[str, jax.Array]:
    from craftax.craftax_classic.constants import DIRECTIONS, Action, BlockType

    action = jnp.where(prev.is_sleeping, Action.NOOP.value, action)
    is_do = action == Action.DO.value
    target, on_map, cell = _facing(prev, DIRECTIONS)
    block_before = prev.map[cell[0], cell[1]]
    block_after = nxt.map[cell[0], cell[1]]
    inv, inv_next = prev.inventory, nxt.inventory

    # Combat comes first in Craftax's DO: a mob in the faced cell takes the hit.
    damage = jnp.max(
        jnp.array(
            [1, 2 * inv.wood_sword, 3 * inv.stone_sword, 5 * inv.iron_sword],
            dtype=jnp.int32,
        )
    )
    hit_zombie, kill_zombie = _hit(prev.zombies, target, damage)
    hit_cow, kill_cow = _hit(prev.cows, target, damage)
    hit_skeleton, kill_skeleton = _hit(prev.skeletons, target, damage)
    hit_mob = hit_zombie | hit_cow | hit_skeleton
    do_on_block = is_do & on_map & ~hit_mob

    def mined(block_type):
        return is_do & (block_before == block_type.value) & (block_after != block_before)

    def on_action(name, spent_before, spent_after):
        return (action == Action[name].value) & _decreased(spent_before, spent_after)

    return {
        "place_plant": on_action("PLACE_PLANT", inv.sapling, inv_next.sapling),
        "place_table": on_action("PLACE_TABLE", inv.wood, inv_next.wood),
        "place_stone": on_action("PLACE_STONE", inv.stone, inv_next.stone),
        "place_furnace": on_action("PLACE_FURNACE", inv.stone, inv_next.stone),
        "collect_wood": mined(BlockType.TREE),
        "collect_stone": mined(BlockType.STONE),
        "collect_coal": mined(BlockType.COAL),
        "collect_iron": mined(BlockType.IRON),
        "collect_diamond": mined(BlockType.DIAMOND),
        "collect_sapling": do_on_block
        & (block_before == BlockType.GRASS.value)
        & (jnp.asarray(inv_next.sapling) > jnp.asarray(inv.sapling)),
        "collect_drink": do_on_block & (block_before == BlockType.WATER.value),
        # Every Classic recipe spends wood; only the asked-for recipe can run.
        "make_wood_pickaxe": on_action("MAKE_WOOD_PICKAXE", inv.wood, inv_next.wood),
        "make_stone_pickaxe": on_action("MAKE_STONE_PICKAXE", inv.wood, inv_next.wood),
        "make_iron_pickaxe": on_action("MAKE_IRON_PICKAXE", inv.wood, inv_next.wood),
        "make_wood_sword": on_action("MAKE_WOOD_SWORD", inv.wood, inv_next.wood),
        "make_stone_sword": on_action("MAKE_STONE_SWORD", inv.wood, inv_next.wood),
        "make_iron_sword": on_action("MAKE_IRON_SWORD", inv.wood, inv_next.wood),
        "eat_cow": is_do & kill_cow,
        "eat_plant": do_on_block & (block_before == BlockType.RIPE_PLANT.value),
        "sleep": ~prev.is_sleeping & nxt.is_sleeping,
        "wake_up": prev.is_sleeping & ~nxt.is_sleeping,
        "attack_zombie": is_do & hit_zombie & ~kill_zombie,
        "kill_zombie": is_do & kill_zombie,
        "attack_skeleton": is_do & hit_skeleton & ~kill_skeleton,
        "kill_skeleton": is_do & kill_skeleton,
        "attack_cow": is_do & hit_cow & ~kill_cow,
    }


def _checked(event_achievement, events, achievements) -> dict[str, str]:
    """Fail loudly at spec build time if a name drifted from the Craftax enums."""
    for event, achievement in event_achievement.items():
        if event not in events or achievement not in achievements:
            raise AssertionError(f"event map entry {event!r} -> {achievement!r} does not match the Craftax enums")
    return dict(event_achievement)


# ---------------------------------------------------------------------------
# Craftax (full)
# ---------------------------------------------------------------------------


_FULL_EVENTS = (
    "place_plant",
    "place_table",
    "place_stone",
    "place_furnace",
    "place_torch",
    "collect_wood",
    "collect_stone",
    "collect_coal",
    "collect_iron",
    "collect_diamond",
    "collect_sapphire",
    "collect_ruby",
    "collect_sapling",
    "collect_drink",
    "open_chest",
    "make_wood_pickaxe",
    "make_stone_pickaxe",
    "make_iron_pickaxe",
    "make_diamond_pickaxe",
    "make_wood_sword",
    "make_stone_sword",
    "make_iron_sword",
    "make_diamond_sword",
    "make_iron_armour",
    "make_diamond_armour",
    "make_arrow",
    "make_torch",
    "eat_cow",
    "eat_plant",
    "sleep",
    "wake_up",
    "rest",
    "attack_zombie",
    "kill_zombie",
    "attack_skeleton",
    "kill_skeleton",
    "attack_cow",
    "attack_melee",
    "kill_melee",
    "attack_ranged",
    "kill_ranged",
    "attack_passive",
    "eat_passive",
    "kill_by_projectile",
    "fire_bow",
    "cast_fireball",
    "cast_iceball",
    "drink_potion",
    "read_book",
    "enchant_sword",
    "enchant_armour",
    "enchant_bow",
    "level_up",
    "descend",
    "ascend",
)
_FULL_PLACEMENTS = ("place_plant", "place_table", "place_stone", "place_furnace", "place_torch")
_FULL_EVENT_ACHIEVEMENT = {
    **{name: name for name in _FULL_EVENTS if name.startswith(("place_", "collect_", "make_"))},
    **{name: name for name in ("open_chest", "eat_cow", "eat_plant", "wake_up", "fire_bow", "cast_fireball")},
    **{name: name for name in ("cast_iceball", "drink_potion", "enchant_sword", "enchant_armour")},
    "kill_zombie": "defeat_zombie",
    "kill_skeleton": "defeat_skeleton",
}


def _full_hit(prev, mobs, target, damage_vector, mob_class):
    """A melee hit on one mob class of full Craftax: (hit, lethal, type_id of the mob hit)."""
    from craftax.craftax.constants import MOB_TYPE_DEFENSE_MAPPING
    from craftax.craftax.util.game_logic_utils import get_damage

    level = prev.player_level
    in_target = jnp.all(mobs.position[level] == target, axis=-1) & mobs.mask[level]
    slot = jnp.argmax(in_target)
    type_id = mobs.type_id[level, slot]
    damage = get_damage(damage_vector, MOB_TYPE_DEFENSE_MAPPING[type_id, mob_class])
    hit = jnp.any(in_target)
    # Craftax subtracts the damage and keeps the mob while its health stays > 0.
    lethal = hit & ~(mobs.health[level, slot] + -damage > 0)
    return hit, lethal, type_id


def _count_full(prev, action, nxt) -> dict[str, jax.Array]:
    from craftax.craftax.constants import DIRECTIONS, Action, BlockType
    from craftax.craftax.util.game_logic_utils import get_player_damage_vector

    action = jnp.where(prev.is_sleeping | prev.is_resting, Action.NOOP.value, action)
    is_do = action == Action.DO.value
    target, on_map, cell = _facing(prev, DIRECTIONS)
    level = prev.player_level
    block_before = prev.map[level, cell[0], cell[1]]
    block_after = nxt.map[level, cell[0], cell[1]]
    inv, inv_next = prev.inventory, nxt.inventory

    # Combat comes first in Craftax's DO: a mob in the faced cell takes the hit.
    damage_vector = get_player_damage_vector(prev)
    hit_melee, kill_melee, melee_type = _full_hit(prev, prev.melee_mobs, target, damage_vector, 1)
    hit_passive, kill_passive, passive_type = _full_hit(prev, prev.passive_mobs, target, damage_vector, 0)
    hit_ranged, kill_ranged, ranged_type = _full_hit(prev, prev.ranged_mobs, target, damage_vector, 2)
    hit_melee, kill_melee = is_do & hit_melee, is_do & kill_melee
    hit_passive, kill_passive = is_do & hit_passive, is_do & kill_passive
    hit_ranged, kill_ranged = is_do & hit_ranged, is_do & kill_ranged
    do_on_block = is_do & on_map & ~(hit_melee | hit_passive | hit_ranged)
    # Player projectiles (arrows, spells) kill monsters too; Craftax tallies every
    # monster the player kills per floor, melee blows included.
    monster_kills = jnp.sum(nxt.monsters_killed) - jnp.sum(prev.monsters_killed)
    projectile_kills = jnp.maximum(monster_kills - kill_melee - kill_ranged, 0)

    def mined(*block_types):
        was = jnp.any(jnp.array([block_before == b.value for b in block_types]))
        return is_do & was & (block_after != block_before)

    def on_action(name, spent_before, spent_after):
        return (action == Action[name].value) & _decreased(spent_before, spent_after)

    def on_actions(names, spent_before, spent_after):
        asked = jnp.any(jnp.array([action == Action[n].value for n in names]))
        return asked & _decreased(spent_before, spent_after)

    return {
        "place_plant": on_action("PLACE_PLANT", inv.sapling, inv_next.sapling),
        "place_table": on_action("PLACE_TABLE", inv.wood, inv_next.wood),
        "place_stone": on_action("PLACE_STONE", inv.stone, inv_next.stone),
        "place_furnace": on_action("PLACE_FURNACE", inv.stone, inv_next.stone),
        "place_torch": on_action("PLACE_TORCH", inv.torches, inv_next.torches),
        "collect_wood": mined(BlockType.TREE, BlockType.FIRE_TREE, BlockType.ICE_SHRUB),
        "collect_stone": mined(BlockType.STONE, BlockType.STALAGMITE),
        "collect_coal": mined(BlockType.COAL),
        "collect_iron": mined(BlockType.IRON),
        "collect_diamond": mined(BlockType.DIAMOND),
        "collect_sapphire": mined(BlockType.SAPPHIRE),
        "collect_ruby": mined(BlockType.RUBY),
        "collect_sapling": do_on_block
        & (block_before == BlockType.GRASS.value)
        & (jnp.asarray(inv_next.sapling) > jnp.asarray(inv.sapling)),
        "collect_drink": do_on_block
        & ((block_before == BlockType.WATER.value) | (block_before == BlockType.FOUNTAIN.value)),
        "open_chest": mined(BlockType.CHEST),
        # Tools, weapons, arrows and torches all spend wood; armour spends iron or diamond.
        "make_wood_pickaxe": on_action("MAKE_WOOD_PICKAXE", inv.wood, inv_next.wood),
        "make_stone_pickaxe": on_action("MAKE_STONE_PICKAXE", inv.wood, inv_next.wood),
        "make_iron_pickaxe": on_action("MAKE_IRON_PICKAXE", inv.wood, inv_next.wood),
        "make_diamond_pickaxe": on_action("MAKE_DIAMOND_PICKAXE", inv.wood, inv_next.wood),
        "make_wood_sword": on_action("MAKE_WOOD_SWORD", inv.wood, inv_next.wood),
        "make_stone_sword": on_action("MAKE_STONE_SWORD", inv.wood, inv_next.wood),
        "make_iron_sword": on_action("MAKE_IRON_SWORD", inv.wood, inv_next.wood),
        "make_diamond_sword": on_action("MAKE_DIAMOND_SWORD", inv.wood, inv_next.wood),
        "make_iron_armour": on_action("MAKE_IRON_ARMOUR", inv.iron, inv_next.iron),
        "make_diamond_armour": on_action("MAKE_DIAMOND_ARMOUR", inv.diamond, inv_next.diamond),
        "make_arrow": on_action("MAKE_ARROW", inv.wood, inv_next.wood),
        "make_torch": on_action("MAKE_TORCH", inv.wood, inv_next.wood),
        "eat_cow": kill_passive & (passive_type == 0),
        "eat_plant": do_on_block & (block_before == BlockType.RIPE_PLANT.value),
        "sleep": ~prev.is_sleeping & nxt.is_sleeping,
        "wake_up": prev.is_sleeping & ~nxt.is_sleeping,
        "rest": ~prev.is_resting & nxt.is_resting,
        "attack_zombie": hit_melee & ~kill_melee & (melee_type == 0),
        "kill_zombie": kill_melee & (melee_type == 0),
        "attack_skeleton": hit_ranged & ~kill_ranged & (ranged_type == 0),
        "kill_skeleton": kill_ranged & (ranged_type == 0),
        "attack_cow": hit_passive & ~kill_passive & (passive_type == 0),
        "attack_melee": hit_melee & ~kill_melee,
        "kill_melee": kill_melee,
        "attack_ranged": hit_ranged & ~kill_ranged,
        "kill_ranged": kill_ranged,
        "attack_passive": hit_passive & ~kill_passive,
        "eat_passive": kill_passive,
        "kill_by_projectile": projectile_kills,
        "fire_bow": on_action("SHOOT_ARROW", inv.arrows, inv_next.arrows),
        "cast_fireball": on_action("CAST_FIREBALL", prev.player_mana, nxt.player_mana),
        "cast_iceball": on_action("CAST_ICEBALL", prev.player_mana, nxt.player_mana),
        "drink_potion": on_actions(
            [a.name for a in Action if a.name.startswith("DRINK_POTION_")],
            jnp.sum(inv.potions),
            jnp.sum(inv_next.potions),
        ),
        "read_book": on_action("READ_BOOK", inv.books, inv_next.books),
        "enchant_sword": on_action("ENCHANT_SWORD", prev.player_mana, nxt.player_mana),
        "enchant_armour": on_action("ENCHANT_ARMOUR", prev.player_mana, nxt.player_mana),
        "enchant_bow": on_action("ENCHANT_BOW", prev.player_mana, nxt.player_mana),
        "level_up": on_actions(
            ["LEVEL_UP_DEXTERITY", "LEVEL_UP_STRENGTH", "LEVEL_UP_INTELLIGENCE"], prev.player_xp, nxt.player_xp
        ),
        "descend": jnp.asarray(nxt.player_level) > jnp.asarray(level),
        "ascend": jnp.asarray(nxt.player_level) < jnp.asarray(level),
    }


# Per environment: the Craftax constants module (Achievement and Action enums), the event
# order, the placement events and the event -> achievement map; then the counter.
_TABLES = {
    _CLASSIC: ("craftax.craftax_classic.constants", _CLASSIC_EVENTS, _CLASSIC_PLACEMENTS, _CLASSIC_EVENT_ACHIEVEMENT),
    _FULL: ("craftax.craftax.constants", _FULL_EVENTS, _FULL_PLACEMENTS, _FULL_EVENT_ACHIEVEMENT),
}
_COUNTERS = {_CLASSIC: _count_classic, _FULL: _count_full}
